//! `allowed_origins` refuses foreign browser upgrades with 403, and a
//! configured audience is required in tokens.

use sluice_tests::client::hello;
use sluice_tests::{Client, System, SystemOptions, token_with, unique_user};
use tokio_tungstenite::tungstenite::Error as WsError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_get_403_before_upgrade() {
    let system = System::start(
        SystemOptions::default()
            .gateway("SLUICE_AUTH__ALLOWED_ORIGINS", r#"["https://app.example"]"#),
    )
    .await;
    let url = system.ws_url();
    match Client::connect_with(&url, &[("origin", "https://evil.example")]).await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 403),
        Err(other) => panic!("expected HTTP 403, got {other}"),
        Ok(_) => panic!("a foreign origin was upgraded"),
    }
    let token = token_with(&unique_user("o"), 60, None);
    for origin in [Some("https://app.example"), None] {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        let mut client = Client::connect_with(&url, &headers)
            .await
            .expect("allowed upgrade");
        client.send_frame(&hello(&token, None)).await;
        assert!(matches!(
            client.next_frame().await,
            sluice_proto::ServerFrame::Welcome { .. }
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_audience_is_required() {
    let system =
        System::start(SystemOptions::default().gateway("SLUICE_AUTH__AUDIENCE", "sluice")).await;
    let user = unique_user("aud");
    for (what, aud, welcomed) in [
        ("right", Some("sluice"), true),
        ("wrong", Some("other"), false),
        ("missing", None, false),
    ] {
        let mut client = Client::connect(&system.ws_url()).await;
        client
            .send_frame(&hello(&token_with(&user, 60, aud), None))
            .await;
        if welcomed {
            assert!(
                matches!(
                    client.next_frame().await,
                    sluice_proto::ServerFrame::Welcome { .. }
                ),
                "{what}"
            );
        } else {
            assert_eq!(client.expect_close().await, Some(1008), "{what} audience");
        }
    }
}
