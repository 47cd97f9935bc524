/// The committed contract is what the code serves: regenerate it with
/// `cargo run -p gateway -- schema > schema.graphql`.
#[test]
fn committed_schema_matches_the_code() {
    let committed = include_str!("../../schema.graphql");
    let generated = gateway::api::export_sdl();
    assert!(
        committed == generated,
        "schema.graphql is stale: run `cargo run -p gateway -- schema > schema.graphql`"
    );
}
