-- Three values over every ticket: no list is served better by this index
-- than by scanning an ordered index and filtering, while every status or
-- priority change paid for maintaining it.
DROP INDEX tickets_status;
