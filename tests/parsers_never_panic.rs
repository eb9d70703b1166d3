//! Property tests: whatever users put in their files, parsing and checking
//! report diagnostics and never panic.

use std::path::Path;

use model::diag::Diagnostics;
use model::flow::reference::{Assignment, MappingSource, parse_variant, property_path};
use model::flow::{dag, dag_check, python, run_file, template};
use model::{config, yaml};
use proptest::prelude::*;

/// YAML-looking text built from the tokens flow files are made of, so the
/// generator reaches deep into the decoders instead of failing at the lexer.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("inputs:".to_string()),
        Just("outputs:".to_string()),
        Just("nodes:".to_string()),
        Just("node_variants:".to_string()),
        Just("additional_includes:".to_string()),
        Just("- name: n".to_string()),
        Just("type: python".to_string()),
        Just("type: string".to_string()),
        Just("source:".to_string()),
        Just("path: x.py".to_string()),
        Just("reference: ${n.output.a}".to_string()),
        Just("activate:".to_string()),
        Just("when: ${inputs.q}".to_string()),
        Just("is: true".to_string()),
        Just("aggregation: true".to_string()),
        Just("use_variants: true".to_string()),
        Just("flow: .".to_string()),
        Just("data: d.jsonl".to_string()),
        Just("column_mapping:".to_string()),
        Just("gates:".to_string()),
        Just("min: 0.5".to_string()),
        Just("max_drop: 5%".to_string()),
        Just("flows:".to_string()),
        Just("&a x".to_string()),
        Just("*a".to_string()),
        Just("[1, {a: b}]".to_string()),
        "[a-z_${}.:\\-\\[\\]'\" ]{0,12}",
    ];
    let line = (0usize..4, token).prop_map(|(indent, t)| format!("{}{}", "  ".repeat(indent), t));
    prop::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
}

/// Nesting of any depth and mix: `- `, `[`, `{a: ` and indented mappings,
/// around the 100-level limit and far past it (200,000 nested `- ` once
/// overflowed the stack).
fn nested_yaml() -> impl Strategy<Value = String> {
    let opener = prop_oneof![Just("- "), Just("["), Just("{a: "), Just("k:\n  ")];
    (prop::collection::vec(opener, 1..8), 1usize..400, prop::bool::ANY).prop_map(|(pattern, depth, deep)| {
        let depth = if deep { depth * 500 } else { depth };
        pattern.iter().cycle().take(depth).copied().collect::<String>() + "x\n"
    })
}

/// Data files: JSON lines and CSV with nesting, quotes, duplicate headers
/// and ragged rows.
fn data_text() -> impl Strategy<Value = (bool, String)> {
    let json_line = prop_oneof![
        (1usize..300).prop_map(|d| format!("{{\"a\": {}1{}}}", "[".repeat(d), "]".repeat(d))),
        Just("{\"a\": NaN}".to_string()),
        "[\\PC]{0,40}",
        Just("{\"a\": 1}".to_string()),
    ];
    let csv_line = prop_oneof![Just("a,a,b".to_string()), Just("\"x".to_string()), "[a-z,\"\\n]{0,30}"];
    prop_oneof![
        prop::collection::vec(json_line, 0..20).prop_map(|l| (true, l.join("\n"))),
        prop::collection::vec(csv_line, 0..20).prop_map(|l| (false, l.join("\n"))),
    ]
}

fn reference_text() -> impl Strategy<Value = String> {
    prop_oneof!["\\$\\{[a-z._\\[\\]'0-9{}\"]{0,16}\\}", "[\\PC]{0,20}", Just("${}".to_string()), Just("${".to_string())]
}

fn decode_everything(text: &str) {
    let Ok(Some(root)) = yaml::parse(text) else {
        return;
    };
    let mut diags = Diagnostics::default();
    let dir = Path::new("repo/flows/x");
    if let Some(flow) = dag::decode(dir, &root, &mut diags) {
        dag_check::check_flow(&flow, Path::new("repo"), &mut diags);
    }
    run_file::decode(Path::new("repo/run.yml"), &root, &mut diags);
    config::decode(Path::new("repo/.flow-ci.yaml"), &root, &mut diags);
    let _ = root.to_json();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_the_yaml_parser(text in "[\\PC\\n\\t]{0,200}") {
        decode_everything(&text);
    }

    #[test]
    fn flow_shaped_yaml_never_panics_the_decoders(text in yamlish()) {
        decode_everything(&text);
    }

    #[test]
    fn nesting_of_any_depth_is_a_diagnostic_not_a_crash(text in nested_yaml()) {
        decode_everything(&text);
    }

    #[test]
    fn data_files_never_panic_the_readers((jsonl, text) in data_text()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if jsonl { "d.jsonl" } else { "d.csv" });
        std::fs::write(&path, &text).unwrap();
        let _ = model::data::load(&path);
    }

    /// Every diagnostic of any file, and any position on any line, shows
    /// with its source line (plain and colored) without a panic.
    #[test]
    fn diagnostics_render_with_their_source_line(text in prop_oneof![yamlish(), "[\\PC\n\t]{0,200}"], line in 1u32..40, col in 1u32..80) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".flow-ci.yaml");
        std::fs::write(&file, &text).unwrap();
        let mut diags = Diagnostics::default();
        config::load(&file, &mut diags);
        let mut found = diags.into_sorted();
        found.push(model::diag::Diagnostic::error(model::diag::Code::InvalidValue, &file, model::yaml::Pos::new(line, col), "m").with_hint("h"));
        for color in [false, true] {
            let mut human = model::diag::HumanRenderer::new(color);
            for d in &found {
                let shown = human.render(d, dir.path());
                prop_assert!(shown.contains(&format!(".flow-ci.yaml:{}:{}:", d.pos.line, d.pos.col)), "{}", shown);
            }
        }
    }

    #[test]
    fn references_never_panic(text in reference_text()) {
        let json = serde_json::Value::String(text.clone());
        let _ = Assignment::parse(&json);
        let _ = MappingSource::parse(&json);
        let _ = parse_variant(&text);
        let _ = property_path(&text);
    }

    #[test]
    fn sources_and_templates_never_panic(text in "[\\PC\\n]{0,200}") {
        let _ = python::scan(&text);
        let _ = template::check_syntax(&text);
    }
}
