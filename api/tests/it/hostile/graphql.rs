//! The GraphQL part of the corpus: malformed and deeply nested JSON,
//! wrong types and huge numbers, injection strings in every argument,
//! documents the schema does not allow, and batches.

use serde_json::{json, Value};
use uuid::Uuid;

use super::probe::{Expect, Probe, BAD_INPUT, CLIENT};
use super::Targets;

/// Malformed JSON, and JSON nested deeper than any parser should follow,
/// all within the 1 MiB limit.
pub fn malformed(t: &Targets, probes: &mut Vec<Probe>) {
    let token = Some(t.employee.as_str());
    let valid = r#"{"query":"{ me { id email } }","variables":{}}"#;
    for end in (0..valid.len() - 1).step_by(3) {
        probes.push(Probe::json(format!("truncated at {end}"), token, &valid[..end], Expect::Code(BAD_INPUT)));
    }
    let bodies: &[&[u8]] = &[
        b"not json",
        b"{",
        b"}",
        b"null",
        b"true",
        b"42",
        b"\"{ me { id } }\"",
        b"{\"query\":}",
        b"{'query':'{ me { id } }'}",
        b"{\"query\":\"{ me { id } }\",}",
        b"{\"query\":\"{ me { id } }\" /* comment */}",
        b"{\"query\":\"\xff\xfe{ me }\"}",
        b"{\"query\":\"{ me { id } }\",\"variables\":{\"a\":NaN}}",
        b"{\"query\":\"{ me { id } }\",\"variables\":{\"a\":Infinity}}",
        b"{\"query\":\"{ me { id } }\",\"variables\":\"not an object\"}",
        b"{\"query\":[\"{ me { id } }\"]}",
        b"{\"query\":{\"me\":\"id\"}}",
        b"{\"query\":null}",
        b"{\"query\":\"\"}",
        b"{\"query\":\"   \"}",
        b"{\"query\":\"{ me { id } }\",\"operationName\":42}",
        b"{\"query\":\"{ me { id } }\",\"extensions\":\"x\"}",
        b"\x00\x00\x00\x00",
    ];
    for body in bodies {
        let what = format!("malformed {}", String::from_utf8_lossy(body));
        probes.push(Probe::json(what, token, body.to_vec(), Expect::Code(BAD_INPUT)));
    }
    // Numbers no field can hold, where any number would be read.
    for number in ["1e999999", "-1e999999", "123456789012345678901234567890", "1e-999999", "-0"] {
        let body = format!(r#"{{"query":"{{ me {{ id }} }}","variables":{{"n":{number}}}}}"#);
        probes.push(Probe::json(format!("number {number}"), token, body, Expect::Clean));
        let body = format!(
            r#"{{"query":"query($n: Int) {{ tickets(first: $n) {{ edges {{ node {{ id }} }} }} }}","variables":{{"n":{number}}}}}"#
        );
        probes.push(Probe::json(format!("first: {number}"), token, body, Expect::Code(BAD_INPUT)));
    }
    // Deep nesting, well under 1 MiB each.
    let depth = 100_000;
    let arrays =
        format!(r#"{{"query":"{{ me {{ id }} }}","variables":{{"a":{}{}}}}}"#, "[".repeat(depth), "]".repeat(depth));
    probes.push(Probe::json("variables nested 100,000 deep", token, arrays, Expect::Code(BAD_INPUT)));
    let objects = format!(
        r#"{{"query":"{{ me {{ id }} }}","variables":{}1{}}}"#,
        r#"{"a":"#.repeat(depth / 2),
        "}".repeat(depth / 2)
    );
    probes.push(Probe::json("objects nested 50,000 deep", token, objects, Expect::Code(BAD_INPUT)));
    let selections = format!("{}{}", "{ me ".repeat(depth / 2), "}".repeat(depth / 2));
    probes.push(Probe::gql("selections nested 50,000 deep", token, &selections, json!({}), Expect::Code(BAD_INPUT)));
    let lists = format!("{{ ticket(id: {}\"x\"{}) {{ id }} }}", "[".repeat(depth), "]".repeat(depth));
    probes.push(Probe::gql("a list literal 100,000 deep", token, &lists, json!({}), Expect::Code(BAD_INPUT)));
    let inputs = format!(
        "{{ tickets(filter: {}1{}) {{ edges {{ node {{ id }} }} }} }}",
        "{a: ".repeat(depth / 4),
        "}".repeat(depth / 4)
    );
    probes.push(Probe::gql("an object literal 25,000 deep", token, &inputs, json!({}), Expect::Code(BAD_INPUT)));
    let parens = format!("{{ me{} {{ id }} }}", "(".repeat(depth));
    probes.push(Probe::gql("100,000 open parentheses", token, &parens, json!({}), Expect::Code(BAD_INPUT)));
}

/// Every operation, with values of every wrong type for one variable.
pub fn wrong_types(t: &Targets, probes: &mut Vec<Probe>) {
    let admin = Some(t.admin.as_str());
    let ticket = t.ticket.as_str();
    let user = t.victim.as_str();
    let operations: [(&str, &str, Value); 12] = [
        ("ticket(id)", "query($v: ID!) { ticket(id: $v) { id } }", json!({})),
        ("tickets(first)", "query($v: Int) { tickets(first: $v) { edges { node { id } } } }", json!({})),
        ("tickets(after)", "query($v: String) { tickets(after: $v) { edges { node { id } } } }", json!({})),
        ("tickets(filter)", "query($v: TicketFilter) { tickets(filter: $v) { edges { node { id } } } }", json!({})),
        ("users(first)", "query($v: Int) { users(first: $v) { edges { node { id } } } }", json!({})),
        (
            "updateTicket(input)",
            "mutation($id: ID!, $v: UpdateTicketInput!) { updateTicket(id: $id, input: $v) { id } }",
            json!({ "id": ticket }),
        ),
        (
            "updateTicket(expectedVersion)",
            "mutation($id: ID!, $v: Int) { updateTicket(id: $id, input: {priority: HIGH}, expectedVersion: $v) { id } }",
            json!({ "id": ticket }),
        ),
        (
            "setUserRole(role)",
            "mutation($id: ID!, $v: Role!) { setUserRole(userId: $id, role: $v) { id } }",
            json!({ "id": user }),
        ),
        (
            "setUserDisabled(disabled)",
            "mutation($id: ID!, $v: Boolean!) { setUserDisabled(userId: $id, disabled: $v) { id } }",
            json!({ "id": user }),
        ),
        ("createTicket(input)", "mutation($v: CreateTicketInput!) { createTicket(input: $v) { id } }", json!({})),
        ("history(first)", "query($id: ID!, $v: Int) { ticket(id: $id) { history(first: $v) { totalCount } } }", json!({ "id": ticket })),
        ("ticketChanged over HTTP", "subscription($v: ID) { ticketChanged(id: $v) { id } }", json!({})),
    ];
    let values = [
        json!(null),
        json!(true),
        json!(-1),
        json!(0),
        json!(2_147_483_648_i64),
        json!(-2_147_483_649_i64),
        json!(i64::MAX),
        json!(1e300),
        json!(1.5),
        json!("not-a-number"),
        json!(""),
        json!([]),
        json!([1, 2]),
        json!({}),
        json!({ "x": 1 }),
        json!("9".repeat(400)),
    ];
    for (what, query, fixed) in operations {
        for value in &values {
            let mut variables = fixed.clone();
            variables["v"] = value.clone();
            let probe = Probe::gql(format!("{what} = {value}"), admin, query, variables, Expect::Clean);
            probes.push(probe);
        }
    }
}

/// Strings that try SQL, GraphQL, template and path injection.
fn payloads() -> Vec<String> {
    let mut payloads: Vec<String> = [
        "' OR '1'='1",
        "'; DROP TABLE events; --",
        "1; SELECT pg_sleep(10) --",
        "\" OR \"\"=\"",
        "admin@example.com'--",
        "%' AND 1=1 --",
        "') UNION SELECT password_hash, email FROM users --",
        "\\'; ATTACH DATABASE '/tmp/x' AS x; --",
        "\"}) { me { id email role } } #",
        "query { __schema { types { name } } }",
        "${jndi:ldap://127.0.0.1/a}",
        "{{7*7}}",
        "../../../../etc/passwd",
        "<script>alert(1)</script>",
        "nul\u{0}byte",
        "\u{202e}gpj.exe",
        "00000000-0000-0000-0000-000000000000",
        "*",
        "%",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    payloads.push("𝕏".repeat(2000));
    payloads
}

/// Each injection string in each string argument, as a variable.
pub fn injections(t: &Targets, probes: &mut Vec<Probe>) {
    let admin = Some(t.admin.as_str());
    let ticket = t.ticket.as_str();
    let nobody = Uuid::new_v4().to_string();
    let targets: [(&str, &str, Value); 17] = [
        ("ticket(id)", "query($v: ID!) { ticket(id: $v) { id title } }", json!({})),
        ("tickets(after)", "query($v: String) { tickets(after: $v) { edges { node { id } } } }", json!({})),
        ("filter.search", "query($v: String) { tickets(filter: {search: $v}) { edges { node { id } } } }", json!({})),
        (
            "filter.assigneeId",
            "query($v: ID) { tickets(filter: {assigneeId: $v}) { edges { node { id } } } }",
            json!({}),
        ),
        (
            "filter.reporterId",
            "query($v: ID) { tickets(filter: {reporterId: $v}) { edges { node { id } } } }",
            json!({}),
        ),
        ("users(after)", "query($v: String) { users(after: $v) { edges { node { id } } } }", json!({})),
        (
            "history(after)",
            "query($id: ID!, $v: Int) { ticket(id: $id) { history(after: $v) { totalCount } } }",
            json!({ "id": ticket, "v": 1 }),
        ),
        ("updateTicket(id)", "mutation($v: ID!) { updateTicket(id: $v, input: {priority: LOW}) { id } }", json!({})),
        (
            "updateTicket(assigneeId)",
            "mutation($id: ID!, $v: ID) { updateTicket(id: $id, input: {assigneeId: $v}) { id } }",
            json!({ "id": ticket }),
        ),
        (
            "updateTicket(confidentialNotes)",
            "mutation($id: ID!, $v: String) { updateTicket(id: $id, input: {confidentialNotes: $v}) { id } }",
            json!({ "id": ticket }),
        ),
        ("deleteTicket(id)", "mutation($v: ID!) { deleteTicket(id: $v) }", json!({})),
        (
            "deleteTicket(reason)",
            "mutation($id: ID!, $v: String) { deleteTicket(id: $id, reason: $v) }",
            json!({ "id": nobody }),
        ),
        ("setUserRole(userId)", "mutation($v: ID!) { setUserRole(userId: $v, role: ADMIN) { id } }", json!({})),
        (
            "setUserDisabled(userId)",
            "mutation($v: ID!) { setUserDisabled(userId: $v, disabled: true) { id } }",
            json!({}),
        ),
        ("refresh(refreshToken)", "mutation($v: String!) { refresh(refreshToken: $v) { accessToken } }", json!({})),
        (
            "createTicket(title)",
            "mutation($v: String!) { createTicket(input: {title: $v, description: \"d\"}) { id } }",
            json!({}),
        ),
        (
            "createTicket(description)",
            "mutation($v: String!) { createTicket(input: {title: \"t\", description: $v}) { id } }",
            json!({}),
        ),
    ];
    for (what, query, fixed) in &targets {
        for payload in payloads() {
            let mut variables = fixed.clone();
            // `history(after:)` is an Int: the payload goes where it can.
            let slot = if *what == "history(after)" { "id" } else { "v" };
            variables[slot] = json!(payload);
            probes.push(Probe::gql(format!("{what} = {payload:.40}"), admin, query, variables, Expect::Clean));
        }
    }
    // Sign-in takes text from anyone: the same strings, without a token.
    for payload in payloads() {
        let login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }";
        let variables = json!({ "e": payload, "p": payload });
        probes.push(Probe::gql(format!("login = {payload:.40}"), None, login, variables, Expect::Code(CLIENT)));
        let logout = "mutation($v: String!) { logout(refreshToken: $v) }";
        probes.push(Probe::gql(
            format!("logout = {payload:.40}"),
            None,
            logout,
            json!({ "v": payload }),
            Expect::Clean,
        ));
    }
    // Spliced into the document itself, as a string literal.
    for payload in payloads() {
        let literal = serde_json::to_string(&payload).expect("a string");
        let query = format!("{{ ticket(id: {literal}) {{ id }} tickets(filter: {{search: {literal}}}) {{ edges {{ node {{ id }} }} }} }}");
        probes.push(Probe::gql(format!("literal {payload:.40}"), admin, &query, json!({}), Expect::Clean));
        let raw = format!("{{ ticket(id: \"{payload}\") {{ id }} }}");
        probes.push(Probe::gql(format!("unescaped {payload:.40}"), admin, &raw, json!({}), Expect::Clean));
    }
}

/// Documents the schema does not allow.
pub fn invalid_documents(t: &Targets, probes: &mut Vec<Probe>) {
    let token = Some(t.employee.as_str());
    let documents = [
        "{ me { id nosuch } }",
        "{ nosuch }",
        "{ ticket(id: \"x\", bogus: 1) { id } }",
        "{ ticket { id } }",
        "{ me @nosuch { id } }",
        "{ me @include(if: \"yes\") { id } }",
        "{ me { ...Missing } }",
        "fragment A on Query { ...B } fragment B on Query { ...A } { ...A }",
        "fragment F on Nosuch { id } { me { id } }",
        "fragment F on User { id } { me { id } }",
        "query Q { me { id } } query Q { me { id } }",
        "{ me { id } } { me { email } }",
        "query($v: Int) { me { id } }",
        "{ ticket(id: $undefined) { id } }",
        "query($v: Nosuch) { me { id } }",
        "mutation { nosuch }",
        "subscription { nosuch }",
        "{ me }",
        "{ me { id { deeper } } }",
        "{ tickets(first: \"ten\") { edges { node { id } } } }",
        "{ tickets(filter: {status: NOSUCH}) { edges { node { id } } } }",
        "{ tickets(filter: {nosuch: 1}) { edges { node { id } } } }",
        "query { me { id } } extra garbage",
        "{ me { id } # no closing",
    ];
    for document in documents {
        probes.push(Probe::gql(format!("document {document}"), token, document, json!({}), Expect::Code(BAD_INPUT)));
    }
    // An operation name that is not in the document.
    let body = json!({ "query": "query A { me { id } }", "operationName": "B" }).to_string();
    probes.push(Probe::json("unknown operationName", token, body, Expect::Code(BAD_INPUT)));
    // Unknown fields in input objects.
    let variables = json!({ "v": { "title": "t", "description": "d", "reporterId": Uuid::new_v4(), "role": "ADMIN" } });
    let query = "mutation($v: CreateTicketInput!) { createTicket(input: $v) { id } }";
    // Dropped rather than refused (async-graphql ignores them); nothing
    // they name may take effect.
    probes.push(Probe::gql("unknown input fields", token, query, variables, Expect::Clean));
    // Valid, if odd: a byte-order mark is ignored, a repeated directive
    // is not checked.
    for document in ["\u{feff}{ me { id } }", "{ __typename @skip(if: true) @skip(if: true) }"] {
        probes.push(Probe::gql(format!("document {document}"), token, document, json!({}), Expect::Clean));
    }
}

/// Several operations in one request.
pub fn batches(t: &Targets, probes: &mut Vec<Probe>) {
    let token = Some(t.employee.as_str());
    let one = json!({ "query": "{ me { id } }" });
    for count in [0_usize, 1, 2, 100, 2000] {
        let batch = Value::Array(vec![one.clone(); count]).to_string();
        probes.push(Probe::json(format!("a batch of {count}"), token, batch, Expect::Code(BAD_INPUT)));
    }
    for body in [json!([[one.clone()]]), json!([1, 2]), json!([null]), json!([one.clone(), "x"])] {
        probes.push(Probe::json(format!("batch {body}"), token, body.to_string(), Expect::Code(BAD_INPUT)));
    }
}
