//! Checks a run file against its flow and its data, the way `pf run create`
//! would fail at submission or on its first line, but before anything runs.

use std::path::Path;

use super::dag::Flow;
use super::dag::NodeType;
use super::reference::{MappingSource, parse_variant};
use super::run_file::{LLM_CONNECTION_KEYS, RunFile};
use crate::data::{DataError, Table};
use crate::diag::{Code, Diagnostic, Diagnostics, did_you_mean};
use crate::yaml::Pos;

/// What a run file is checked against. Missing pieces (flow not loadable,
/// remote data) skip the checks that need them.
pub struct RunContext<'a> {
    pub flow: Option<&'a Flow>,
    pub data: Option<&'a Result<Table, DataError>>,
    /// For evaluation runs bound by `.flow-ci.yaml`: the flow whose outputs
    /// `${run.outputs.x}` reads.
    pub base_flow: Option<&'a Flow>,
}

pub fn check_run(run: &RunFile, ctx: &RunContext<'_>, diags: &mut Diagnostics) {
    let mut c = RunChecker { run, diags };
    c.sources();
    if let Some(flow) = ctx.flow {
        c.mapping_keys(flow);
        c.variant(flow);
        c.connections(flow);
    }
    c.mapping_sources(ctx);
    if let Some(Ok(table)) = ctx.data {
        c.data_columns(table, ctx.flow);
    }
}

/// Reports a data file's own problems (malformed lines, emptiness) once.
pub fn report_data_error(err: &DataError, run: &RunFile, diags: &mut Diagnostics) {
    let data_pos = run.data.as_ref().map_or(run.pos, |d| d.pos);
    match err {
        DataError::Malformed { lines } => {
            for l in lines {
                diags.push(
                    Diagnostic::error(Code::DataMalformed, &l.path, Pos::new(l.line, l.col), l.message.clone())
                        .with_hint("each line of a .jsonl file must be one JSON object; CSV rows need as many fields as the header"),
                );
            }
        }
        DataError::Empty { .. } => diags.push(
            Diagnostic::error(Code::DataEmpty, &run.file, data_pos, format!("data `{}` has no rows", data_name(run)))
                .with_hint("promptflow fails a batch run on empty data; add at least one row"),
        ),
        DataError::Io { path, source } => {
            diags.push(Diagnostic::error(Code::Io, path, Pos::START, format!("cannot read data: {source}")))
        }
        DataError::Unsupported { .. } => diags.push(
            Diagnostic::warning(
                Code::InvalidValue,
                &run.file,
                data_pos,
                format!("cannot check data `{}` locally", data_name(run)),
            )
            .with_hint("flow-ci reads .jsonl, .json, .csv and .tsv data"),
        ),
        outside @ DataError::Outside { .. } => diags.push(
            Diagnostic::error(Code::PathOutsideRepo, &run.file, data_pos, outside.to_string())
                .with_hint("copy the file into the repository, or point `data:` at data inside it"),
        ),
    }
}

fn data_name(run: &RunFile) -> &str {
    run.data.as_ref().map_or("", |d| d.value.as_str())
}

struct RunChecker<'a> {
    run: &'a RunFile,
    diags: &'a mut Diagnostics,
}

impl RunChecker<'_> {
    fn error(&mut self, code: Code, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        self.diags.push(Diagnostic::error(code, &self.run.file, pos, message).with_hint_opt(hint));
    }

    fn sources(&mut self) {
        if self.run.data.is_none() && self.run.run.is_none() {
            self.error(
                Code::RunSourceMissing,
                self.run.pos,
                "at least one of `data` or `run` must be provided",
                Some("add `data: <file>` for a batch run or `run: <base run>` for an evaluation".into()),
            );
        }
    }

    fn mapping_keys(&mut self, flow: &Flow) {
        for (key, _) in &self.run.column_mapping {
            if flow.input(&key.value).is_some() {
                continue;
            }
            let names = flow.inputs.iter().map(|i| i.name.value.as_str());
            let hint = did_you_mean(&key.value, names).map_or_else(
                || "promptflow passes it along, but no node can read it".to_string(),
                |s| format!("did you mean `{s}`?"),
            );
            self.diags.push(
                Diagnostic::warning(
                    Code::MappingUnknownInput,
                    &self.run.file,
                    key.pos,
                    format!("column mapping sets `{}`, which is not an input of the flow", key.value),
                )
                .with_hint(hint),
            );
        }
    }

    fn mapping_sources(&mut self, ctx: &RunContext<'_>) {
        for (key, source) in &self.run.column_mapping {
            match &source.value {
                MappingSource::RunOutputs(col) | MappingSource::RunInputs(col)
                    if self.run.run.is_none() && ctx.base_flow.is_none() =>
                {
                    let msg = format!("`{}` reads `${{run.…{col}}}` but the run file has no `run:`", key.value);
                    self.error(Code::MappingSource, source.pos, msg, Some("add `run: <name of the base run>`".into()));
                }
                MappingSource::RunOutputs(col) => {
                    let Some(base) = ctx.base_flow else { continue };
                    if base.output(col).is_none() {
                        let names: Vec<&str> = base.outputs.iter().map(|o| o.name.value.as_str()).collect();
                        let hint = did_you_mean(col, names.iter().copied()).map_or_else(
                            || format!("outputs of {}: {}", base.dir.display(), names.join(", ")),
                            |s| format!("did you mean `${{run.outputs.{s}}}`?"),
                        );
                        self.error(
                            Code::RunOutputMissing,
                            source.pos,
                            format!("the base flow has no output `{col}`"),
                            Some(hint),
                        );
                    }
                }
                MappingSource::Unknown(expr) => {
                    let msg = format!("`${{{expr}}}` is not a data or run reference");
                    self.error(
                        Code::MappingSource,
                        source.pos,
                        msg,
                        Some("use `${data.<column>}`, `${run.outputs.<output>}` or `${run.inputs.<column>}`".into()),
                    );
                }
                _ => {}
            }
        }
    }

    /// Every `${data.c}` a line needs must exist in every row, or promptflow
    /// fails the whole run while mapping inputs.
    fn data_columns(&mut self, table: &Table, flow: Option<&Flow>) {
        let data_name = self.run.data.as_ref().map_or_else(String::new, |d| d.value.clone());
        let mut needed: Vec<(String, String, Pos, bool)> = self
            .run
            .column_mapping
            .iter()
            .filter_map(|(k, v)| match &v.value {
                MappingSource::Data(col) => Some((k.value.clone(), col.clone(), v.pos, true)),
                _ => None,
            })
            .collect();
        if let Some(flow) = flow {
            let data_pos = self.run.data.as_ref().map_or(self.run.pos, |d| d.pos);
            for input in flow.inputs.iter().filter(|i| i.default.is_none() && !i.is_chat_history) {
                if !self.run.column_mapping.iter().any(|(k, _)| k.value == input.name.value) {
                    needed.push((input.name.value.clone(), input.name.value.clone(), data_pos, false));
                }
            }
        }
        for (input, col, pos, explicit) in needed {
            if !table.has_column(&col) {
                let columns = table.columns();
                let hint = did_you_mean(&col, columns.iter().copied()).map_or_else(
                    || format!("columns in the data: {}", columns.join(", ")),
                    |s| format!("did you mean `{s}`?"),
                );
                let msg = if explicit {
                    format!("column `{col}` (mapped to input `{input}`) is not in data `{data_name}`")
                } else {
                    format!(
                        "flow input `{input}` has no default and no column mapping, and data `{data_name}` has no column `{input}`"
                    )
                };
                self.error(Code::DataColumnMissing, pos, msg, Some(hint));
            } else if let Some(row) = table.first_row_without(&col) {
                let msg = format!(
                    "this row has no column `{col}`, which {}:{} maps to input `{input}`",
                    display_name(&self.run.file),
                    pos.line
                );
                self.diags.push(
                    Diagnostic::error(Code::DataColumnMissing, table.file_of(row), Pos::new(row.line, 1), msg)
                        .with_hint("promptflow fails the whole run when any row lacks a mapped column"),
                );
            }
        }
    }

    fn variant(&mut self, flow: &Flow) {
        let Some(variant) = &self.run.variant else {
            return;
        };
        let Some((node, id)) = parse_variant(&variant.value) else {
            self.error(
                Code::InvalidValue,
                variant.pos,
                format!("invalid variant `{}`", variant.value),
                Some("write `${node_name.variant_id}`".into()),
            );
            return;
        };
        let Some(variants) = flow.variants_of(&node).filter(|_| flow.node(&node).is_some()) else {
            self.error(
                Code::VariantNotFound,
                variant.pos,
                format!("node `{node}` not found in the flow's variants"),
                None,
            );
            return;
        };
        if !variants.variants.iter().any(|(v, _)| v.value == id) {
            let ids: Vec<&str> = variants.variants.iter().map(|(v, _)| v.value.as_str()).collect();
            self.error(
                Code::VariantNotFound,
                variant.pos,
                format!("variant `{id}` not found for node `{node}`"),
                Some(format!("variants defined: {}", ids.join(", "))),
            );
        }
    }

    fn connections(&mut self, flow: &Flow) {
        for (node_name, settings) in &self.run.connections {
            let Some(node) = flow.node(&node_name.value) else {
                let names = flow.nodes.iter().map(|n| n.name.value.as_str());
                let hint = did_you_mean(&node_name.value, names).map(|s| format!("did you mean `{s}`?"));
                self.error(
                    Code::ConnectionNodeMissing,
                    node_name.pos,
                    format!("connections override node `{}`, which the flow does not have", node_name.value),
                    hint,
                );
                continue;
            };
            if node.ty.as_ref().is_some_and(|t| t.value == NodeType::Llm) {
                for (key, _) in settings.iter().filter(|(k, _)| !LLM_CONNECTION_KEYS.contains(&k.value.as_str())) {
                    let msg = format!(
                        "unsupported llm connection override key `{}` for node `{}`",
                        key.value, node_name.value
                    );
                    self.error(
                        Code::UnknownKey,
                        key.pos,
                        msg,
                        Some(format!("llm nodes accept: {}", LLM_CONNECTION_KEYS.join(", "))),
                    );
                }
            }
        }
    }
}

fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
