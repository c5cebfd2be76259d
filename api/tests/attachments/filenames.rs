//! Names people give their files are for display only: no paths, no
//! control characters, bounded, and always delivered as a download.

use reqwest::StatusCode;
use test_support::Store;

use crate::common::{add_ok, added_entries, download, header, png, ticket, File};
use crate::support::{both_stores, TestApp};

/// (as sent, as shown, the whole `Content-Disposition` when checked exactly)
fn cases() -> Vec<(String, String, Option<&'static str>)> {
    vec![
        (
            "../../etc/passwd.png".into(),
            "passwd.png".into(),
            Some("attachment; filename=\"passwd.png\"; filename*=UTF-8''passwd.png"),
        ),
        ("C:\\Users\\eve\\Desktop\\shot.png".into(), "shot.png".into(), None),
        ("/var/www/html/index.png".into(), "index.png".into(), None),
        // Tab, NEL and CSI are control characters.
        ("tab\there\u{85}and\u{9b}csi.png".into(), "tabhereandcsi.png".into(), None),
        ("\"quoted\".png".into(), "quoted.png".into(), None),
        ("<img src=x onerror=alert(1)>.png".into(), "img src=x onerror=alert(1).png".into(), None),
        (".htaccess".into(), "htaccess".into(), None),
        ("   ".into(), "attachment".into(), Some("attachment; filename=\"attachment\"; filename*=UTF-8''attachment")),
        (
            "résumé final.pdf".into(),
            "résumé final.pdf".into(),
            Some("attachment; filename=\"r_sum_ final.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20final.pdf"),
        ),
        (
            "a\"; filename=evil.html".into(),
            "a; filename=evil.html".into(),
            Some("attachment; filename=\"a; filename=evil.html\"; filename*=UTF-8''a%3B%20filename%3Devil.html"),
        ),
        (format!("{}.png", "x".repeat(300)), "x".repeat(120), None),
    ]
}

async fn filenames_are_sanitised_for_display(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Odd names").await;

    let cases = cases();
    for (sent, shown, disposition) in &cases {
        let file = File::new(sent, "image/png", png());
        let attachment = add_ok(&app, &reporter.token, &id, &file).await;
        assert_eq!(attachment["filename"], shown.as_str(), "sent {sent:?}");

        let response = download(&app, Some(&reporter.token), attachment["url"].as_str().expect("url"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let got = header(&response, "content-disposition");
        match disposition {
            Some(expected) => assert_eq!(&got, expected, "sent {sent:?}"),
            None => {
                assert!(got.starts_with("attachment; filename=\""), "{got}");
                assert!(got.contains("; filename*=UTF-8''"), "{got}");
            }
        }
        // Nothing of the path or the controls reaches the header.
        for bad in ["..", "/", "\\", "\t", "etc", "Users", "<", ">"] {
            assert!(!got.contains(bad), "{bad:?} in {got:?}");
        }
        assert!(got.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{got:?}");
    }

    // The history shows the sanitised names too.
    let seen = ticket(&app, &reporter.token, &id).await;
    let entries = added_entries(&seen);
    assert_eq!(entries.len(), cases.len());
    for (entry, (sent, shown, _)) in entries.iter().zip(&cases) {
        let line = entry["to"].as_str().expect("a history line");
        assert!(line.starts_with(&format!("{shown} (image/png, ")), "sent {sent:?}: {line}");
    }
    app.shutdown().await;
}

/// Bidirectional controls are invisible and reorder what is shown:
/// "invoice\u{202E}fdp.exe" displays as "invoiceexe.pdf".
async fn bidi_controls_are_removed(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Spoofed names").await;
    let cases = [
        ("invoice\u{202E}fdp.png", "invoicefdp.png"),
        ("a\u{202D}b\u{202A}c\u{202B}d\u{202C}.png", "abcd.png"),
        ("x\u{2066}y\u{2067}z\u{2068}w\u{2069}.png", "xyzw.png"),
        ("m\u{200E}n\u{200F}o\u{61C}.png", "mno.png"),
    ];
    for (sent, shown) in cases {
        let attachment = add_ok(&app, &reporter.token, &id, &File::new(sent, "image/png", png())).await;
        assert_eq!(attachment["filename"], shown, "sent {sent:?}");
    }
    app.shutdown().await;
}

both_stores!(filenames_are_sanitised_for_display, bidi_controls_are_removed);
