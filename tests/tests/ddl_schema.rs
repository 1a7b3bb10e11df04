//! Every DDL we ship validates against Choria's agent DDL schema, and loads.

use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema() -> serde_json::Value {
    // Choria's published schema, kept beside the repository (shared/), or
    // wherever MCO_DDL_SCHEMA points.
    let path = std::env::var_os("MCO_DDL_SCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/ddl-schema/agent-v1.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn shipped_ddls_validate_against_the_choria_schema() {
    let validator = jsonschema::validator_for(&schema()).expect("the schema compiles");
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("ddl")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{}:\n{}",
            path.display(),
            errors.join("\n")
        );
        mco_core::Ddl::from_json(&path.display().to_string(), &text).unwrap();
        checked += 1;
    }
    assert!(checked >= 1, "no DDL found");
}

#[test]
fn the_schema_rejects_a_broken_ddl() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let bad = serde_json::json!({
        "metadata": {"name": "Bad Name", "description": "x"},
        "actions": [{"action": "go"}]
    });
    assert!(!validator.is_valid(&bad));
}
