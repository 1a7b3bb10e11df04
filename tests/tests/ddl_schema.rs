//! `ddl/schema.json`, the JSON Schema of our DDL format that editors use:
//! it is a valid draft 2020-12 schema, every DDL we ship validates against
//! it and loads, it knows every field the loader writes, and it refuses
//! broken DDLs the way the loader does.

use std::path::PathBuf;

use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema() -> Value {
    let path = repo().join("ddl/schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("the schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema()).expect("the schema compiles")
}

fn errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// The DDLs we ship: every `ddl/*.json` but the schema itself.
fn shipped() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join("ddl"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| p.file_name().is_some_and(|n| n != "schema.json"))
        .collect();
    out.sort();
    out
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("ddl/schema.json is not a valid schema: {e}");
    }
    // Editors show descriptions: every definition has one.
    for (name, def) in schema["$defs"].as_object().unwrap() {
        assert!(
            def["description"].is_string(),
            "$defs.{name} has no description"
        );
    }
}

#[test]
fn shipped_ddls_validate_against_our_schema_and_load() {
    let validator = validator();
    let files = shipped();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let errors = errors(&validator, &doc);
        assert!(
            errors.is_empty(),
            "{}:\n{}",
            path.display(),
            errors.join("\n")
        );
        mco_core::Ddl::from_json(&path.display().to_string(), &text).unwrap();
    }
    for agent in ["rpcutil", "resource", "nrpe", "provision", "ca"] {
        assert!(
            files
                .iter()
                .any(|p| p.file_stem().is_some_and(|s| s == agent)),
            "ddl/{agent}.json was not checked"
        );
    }
}

/// A DDL with every field the loader knows set, as the loader writes it
/// back: a schema that refuses it has fallen behind `mco_core::ddl`.
#[test]
fn the_schema_knows_every_field_the_loader_has() {
    let full = json!({
        "$schema": "https://github.com/mco-project/mco/blob/main/ddl/schema.json",
        "metadata": {
            "name": "demo", "description": "d", "author": "a", "license": "Apache-2.0",
            "version": "1.0.0", "url": "https://example.net", "timeout": 5, "provider": "external"
        },
        "actions": [{
            "action": "go", "description": "x", "display": "ok",
            "input": {
                "msg": {"prompt": "M", "description": "m", "type": "string", "validation": "^[a-z]+$",
                        "maxlength": 10, "optional": false, "default": "abc", "sensitive": true},
                "level": {"prompt": "L", "description": "l", "type": "list", "list": ["low", "high"],
                          "optional": true, "default": "low"},
                "count": {"type": "integer", "optional": true, "default": 3},
                "body": {"type": "string", "optional": true, "maxlength": 0, "audit": "digest"},
                "opts": {"type": "Hash", "optional": true, "default": {"a": 1}},
                "ips": {"type": "array", "optional": true, "validation": "ipaddress"}
            },
            "output": {"out": {"description": "o", "display_as": "Out", "type": "integer", "default": 0}},
            "aggregate": [{"function": "summary", "args": ["out", {"format": "%s"}]}]
        }]
    });
    let text = full.to_string();
    let ddl = mco_core::Ddl::from_json("full.json", &text).expect("the full DDL loads");
    let written = serde_json::to_value(&ddl).unwrap();
    let validator = validator();
    for (what, doc) in [("as written", &full), ("as the loader writes it", &written)] {
        let errors = errors(&validator, doc);
        assert!(errors.is_empty(), "{what}:\n{}", errors.join("\n"));
    }
}

/// Broken DDLs: the schema refuses each; where the loader is strict too,
/// it refuses them as well (the schema is stricter only about unknown keys,
/// which the loader ignores).
#[test]
fn the_schema_rejects_broken_ddls() {
    let validator = validator();
    let good = json!({
        "metadata": {"name": "demo", "description": "d"},
        "actions": [{"action": "go", "input": {"msg": {"type": "string", "optional": true}}}]
    });
    assert!(validator.is_valid(&good), "{:?}", errors(&validator, &good));
    mco_core::Ddl::from_json("good.json", &good.to_string()).unwrap();

    let broken: Vec<(&str, Value, bool)> = vec![
        (
            "a name with capitals and a space",
            json!({"metadata": {"name": "Bad Name", "description": "x"}, "actions": [{"action": "go"}]}),
            true,
        ),
        (
            "no description",
            json!({"metadata": {"name": "demo"}, "actions": [{"action": "go"}]}),
            true,
        ),
        (
            "no actions",
            json!({"metadata": {"name": "demo", "description": "d"}, "actions": []}),
            true,
        ),
        ("no metadata", json!({"actions": [{"action": "go"}]}), true),
        (
            "an action without a name",
            json!({"metadata": {"name": "demo", "description": "d"}, "actions": [{"description": "x"}]}),
            true,
        ),
        (
            "a bad action name",
            json!({"metadata": {"name": "demo", "description": "d"}, "actions": [{"action": "Go!"}]}),
            true,
        ),
        (
            "an unknown input type",
            with_input(json!({"type": "strng"})),
            true,
        ),
        (
            "an audit mode that does not exist",
            with_input(json!({"type": "string", "audit": "hidden"})),
            true,
        ),
        (
            "an input without a type",
            with_input(json!({"optional": true})),
            true,
        ),
        (
            "a list input without values",
            with_input(json!({"type": "list"})),
            true,
        ),
        (
            "a list input with an empty list",
            with_input(json!({"type": "list", "list": []})),
            true,
        ),
        (
            "a default of the wrong type",
            with_input(json!({"type": "integer", "default": "three"})),
            true,
        ),
        (
            "a negative maxlength",
            with_input(json!({"type": "string", "maxlength": -1})),
            true,
        ),
        (
            "a bad display",
            json!({"metadata": {"name": "demo", "description": "d"}, "actions": [{"action": "go", "display": "never"}]}),
            true,
        ),
        (
            "a negative timeout",
            json!({"metadata": {"name": "demo", "description": "d", "timeout": -5}, "actions": [{"action": "go"}]}),
            true,
        ),
        (
            "an aggregate without arguments",
            json!({"metadata": {"name": "demo", "description": "d"}, "actions": [{"action": "go", "aggregate": [{"function": "summary", "args": []}]}]}),
            true,
        ),
        (
            "a misspelt key",
            with_input(json!({"type": "string", "optinal": true})),
            false,
        ),
    ];
    for (what, doc, loader_refuses) in broken {
        assert!(!validator.is_valid(&doc), "the schema accepted {what}");
        assert_eq!(
            mco_core::Ddl::from_json("broken.json", &doc.to_string()).is_err(),
            loader_refuses,
            "the loader and the schema disagree on {what}"
        );
    }
}

/// A one-action DDL whose only input `x` is `input`.
fn with_input(input: Value) -> Value {
    json!({
        "metadata": {"name": "demo", "description": "d"},
        "actions": [{"action": "go", "input": {"x": input}}]
    })
}
