//! The shipped example config must load and equal the built-in defaults,
//! so the file documents exactly what a user gets; and, having no secret,
//! it must not start a gateway by itself.

use sluice_gateway::config::Config;
use sluice_process::config::Settings;

#[test]
fn example_config_matches_the_gateways_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sluice.example.toml");
    let loaded: Config = sluice_process::config::load_file(std::path::Path::new(path))
        .expect("example config loads");
    assert_eq!(
        serde_json::to_value(&loaded).unwrap(),
        serde_json::to_value(Config::default()).unwrap(),
        "deploy/sluice.example.toml drifted from the defaults in gateway/src/config.rs"
    );
    let refused = loaded.validate().unwrap_err().to_string();
    assert!(refused.contains("auth.jwt_secret"), "{refused}");
}
