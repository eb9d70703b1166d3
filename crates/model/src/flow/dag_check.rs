//! Semantic checks on a loaded flow: the checks promptflow's executor makes
//! before running (references, cycles, aggregation wiring, sources), done
//! statically so CI catches them without running anything.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use crate::paths::is_inside;

use super::dag::{Flow, Node, NodeType, SourceKind};
use super::python;
use super::reference::Assignment;
use super::template;
use crate::diag::{Code, Diagnostic, Diagnostics, did_you_mean};
use crate::yaml::{Pos, Spanned};

/// Runs every check on `flow`. `repo_root` bounds the paths a flow may use.
pub fn check_flow(flow: &Flow, repo_root: &Path, diags: &mut Diagnostics) {
    let mut c = Checker { flow, repo_root, diags };
    c.duplicate_nodes();
    c.variants();
    for node in flow.all_node_definitions() {
        c.node_references(node);
        c.source(node);
    }
    c.cycles();
    c.outputs();
    c.includes();
    c.requirements();
}

struct Checker<'a> {
    flow: &'a Flow,
    repo_root: &'a Path,
    diags: &'a mut Diagnostics,
}

impl Checker<'_> {
    fn error(&mut self, code: Code, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        self.diags.push(Diagnostic::error(code, &self.flow.file, pos, message).with_hint_opt(hint));
    }

    fn warning(&mut self, code: Code, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        self.diags.push(Diagnostic::warning(code, &self.flow.file, pos, message).with_hint_opt(hint));
    }

    fn duplicate_nodes(&mut self) {
        let mut first: HashMap<&str, Pos> = HashMap::new();
        for node in &self.flow.nodes {
            if let Some(pos) = first.get(node.name.value.as_str()) {
                let msg = format!("duplicate node name `{}`", node.name.value);
                self.error(
                    Code::DuplicateNodeName,
                    node.name.pos,
                    msg,
                    Some(format!("first defined at line {}; node names must be unique", pos.line)),
                );
            } else {
                first.insert(&node.name.value, node.name.pos);
            }
        }
    }

    fn is_aggregation(&self, name: &str) -> Option<bool> {
        self.flow.node(name).map(|n| self.effective(n).aggregation)
    }

    /// A `use_variants` node behaves like its default variant.
    fn effective<'n>(&'n self, node: &'n Node) -> &'n Node {
        if !node.use_variants {
            return node;
        }
        let Some(variants) = self.flow.variants_of(&node.name.value) else {
            return node;
        };
        let default = variants.default_variant_id.as_ref().map(|d| d.value.as_str());
        variants.variants.iter().find(|(id, _)| Some(id.value.as_str()) == default).map_or(node, |(_, n)| n)
    }

    fn node_references(&mut self, node: &Node) {
        let inputs = node.inputs.iter().map(|(_, a)| a);
        let when = node.activate.iter().map(|a| &a.when);
        for (i, assignment) in inputs.chain(when).enumerate() {
            let in_activate = i >= node.inputs.len();
            self.reference(node, assignment, in_activate);
        }
    }

    fn reference(&mut self, node: &Node, assignment: &Spanned<Assignment>, in_activate: bool) {
        let who = format!("node `{}`", node.name.value);
        match &assignment.value {
            Assignment::Literal(_) => {}
            Assignment::FlowInput(name) => self.input_reference(&who, name, assignment.pos),
            Assignment::Node { node: target, section, .. } => {
                if !self.node_reference(&who, target, section, assignment.pos) {
                    return;
                }
                let target_agg = self.is_aggregation(target).unwrap_or(false);
                if !node.aggregation && target_agg {
                    let msg = format!("{who} is not an aggregation node but references aggregation node `{target}`");
                    self.error(Code::AggregationReference, assignment.pos, msg, Some("aggregation nodes run once after all lines; only other aggregation nodes can use their output".into()));
                } else if node.aggregation && in_activate && !target_agg {
                    let msg =
                        format!("the `activate.when` of aggregation {who} references non-aggregation node `{target}`");
                    self.error(
                        Code::AggregationReference,
                        assignment.pos,
                        msg,
                        Some(
                            "an aggregation node's activate condition may only use flow inputs or aggregation nodes"
                                .into(),
                        ),
                    );
                }
            }
        }
    }

    fn input_reference(&mut self, who: &str, name: &str, pos: Pos) {
        if self.flow.input(name).is_some() {
            return;
        }
        let names = self.flow.inputs.iter().map(|i| i.name.value.as_str());
        let hint = match did_you_mean(name, names) {
            Some(s) => format!("did you mean `${{inputs.{s}}}`?"),
            None if name.contains('.') => "flow inputs have no nested access; reference the whole input".into(),
            None => format!("declare `{name}` under the flow's `inputs:`"),
        };
        self.error(
            Code::UnknownInputReference,
            pos,
            format!("{who} references flow input `{name}`, which is not defined"),
            Some(hint),
        );
    }

    /// Reports unknown nodes and unsupported sections; true when the target exists.
    fn node_reference(&mut self, who: &str, target: &str, section: &str, pos: Pos) -> bool {
        if self.flow.node(target).is_none() {
            let names = self.flow.nodes.iter().map(|n| n.name.value.as_str());
            let hint = match did_you_mean(target, names) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "reference an existing node as `${node_name.output}`".into(),
            };
            self.error(
                Code::UnknownNodeReference,
                pos,
                format!("{who} references a non-existent node `{target}`"),
                Some(hint),
            );
            return false;
        }
        if section != "output" {
            let msg = format!("{who} references `{target}.{section}`; only `${{{target}.output}}` is supported");
            self.error(
                Code::UnsupportedReference,
                pos,
                msg,
                Some(format!("use `${{{target}.output}}` or `${{{target}.output.<key>}}`")),
            );
            return false;
        }
        true
    }

    /// Stable topological order as promptflow computes it; leftovers form cycles.
    fn cycles(&mut self) {
        let nodes: Vec<&Node> = self.flow.nodes.iter().map(|n| self.effective(n)).collect();
        let known: HashSet<&str> = nodes.iter().map(|n| n.name.value.as_str()).collect();
        let deps: Vec<HashSet<&str>> =
            nodes.iter().map(|n| n.dependencies().map(|(d, _)| d).filter(|d| known.contains(d)).collect()).collect();
        let mut done: HashSet<&str> = HashSet::new();
        let mut remaining: Vec<usize> = (0..nodes.len()).collect();
        while let Some(at) = remaining.iter().position(|&i| deps[i].iter().all(|d| done.contains(d))) {
            done.insert(&nodes[remaining.remove(at)].name.value);
        }
        if remaining.is_empty() {
            return;
        }
        let cycle = find_cycle(&nodes, &deps, &remaining);
        let first = nodes[cycle[0]];
        let path: Vec<&str> =
            cycle.iter().chain(std::iter::once(&cycle[0])).map(|&i| nodes[i].name.value.as_str()).collect();
        let mut stuck: Vec<&str> = remaining.iter().map(|&i| nodes[i].name.value.as_str()).collect();
        stuck.sort_unstable();
        self.error(
            Code::DependencyCycle,
            first.name.pos,
            format!("nodes form a dependency cycle: {} (each waits for the next)", path.join(" -> ")),
            Some(format!("break the cycle; nodes that cannot run: {}", stuck.join(", "))),
        );
    }

    fn outputs(&mut self) {
        for output in &self.flow.outputs {
            let Some(reference) = &output.reference else {
                continue;
            };
            let who = format!("output `{}`", output.name.value);
            match &reference.value {
                Assignment::Literal(_) => {}
                Assignment::FlowInput(name) => self.input_reference(&who, name, reference.pos),
                Assignment::Node { node, section, .. } => {
                    if self.node_reference(&who, node, section, reference.pos)
                        && self.is_aggregation(node) == Some(true)
                    {
                        self.warning(
                            Code::OutputReferencesAggregation,
                            reference.pos,
                            format!(
                                "{who} references aggregation node `{node}`; promptflow drops it from line outputs"
                            ),
                            Some("aggregation results belong in metrics (`log_metric`), not flow outputs".into()),
                        );
                    }
                }
            }
        }
    }

    fn variants(&mut self) {
        for node in self.flow.nodes.iter().filter(|n| n.use_variants) {
            let name = &node.name.value;
            let Some(v) = self.flow.variants_of(name) else {
                self.error(
                    Code::VariantNotFound,
                    node.name.pos,
                    format!("node `{name}` uses variants but `node_variants` has no entry for it"),
                    Some(format!("add `node_variants: {{{name}: {{default_variant_id: ..., variants: ...}}}}`")),
                );
                continue;
            };
            match &v.default_variant_id {
                None => self.error(
                    Code::VariantNotFound,
                    v.node.pos,
                    format!("default variant id is not specified for `{name}`"),
                    Some("add `default_variant_id: <one of the variants>`".into()),
                ),
                Some(id) if !v.variants.iter().any(|(vid, _)| vid.value == id.value) => {
                    let ids: Vec<&str> = v.variants.iter().map(|(vid, _)| vid.value.as_str()).collect();
                    self.error(
                        Code::VariantNotFound,
                        id.pos,
                        format!("default variant `{}` not found for node `{name}`", id.value),
                        Some(format!("variants defined: {}", ids.join(", "))),
                    );
                }
                Some(_) => {}
            }
        }
        for v in &self.flow.node_variants {
            if !self.flow.nodes.iter().any(|n| n.use_variants && n.name.value == v.node.value) {
                self.warning(Code::VariantNotFound, v.node.pos, format!("`node_variants` defines variants for `{}`, but no node with `use_variants: true` has that name", v.node.value), None);
            }
        }
    }

    fn source(&mut self, node: &Node) {
        let Some(source) = &node.source else { return };
        let (SourceKind::Code | SourceKind::PackageWithPrompt, Some(path)) = (&source.kind, &source.path) else {
            return;
        };
        let Some(file) = self.contained_path(&path.value, path.pos, "source file") else {
            return;
        };
        if !file.is_file() {
            if self.provided_by_include(&path.value) {
                return;
            }
            let msg = format!("source file `{}` of node `{}` can not be found", path.value, node.name.value);
            self.error(
                Code::SourceMissing,
                path.pos,
                msg,
                Some("paths are relative to the folder holding flow.dag.yaml".into()),
            );
            return;
        }
        match node.ty.as_ref().map(|t| t.value) {
            Some(NodeType::Python) => self.python_source(node, &file, path.pos),
            Some(NodeType::Prompt | NodeType::Llm | NodeType::CustomLlm) => self.template_source(&file),
            None => {}
        }
    }

    /// `path` inside the repository, or a reported error.
    fn contained_path(&mut self, path: &str, pos: Pos, what: &str) -> Option<PathBuf> {
        let joined = self.flow.dir.join(path);
        if is_inside(&joined, self.repo_root) {
            return Some(joined);
        }
        let msg = format!("{what} `{path}` is outside the repository root {}", self.repo_root.display());
        self.error(Code::PathOutsideRepo, pos, msg, Some("flows may only use files inside the repository; move the file in or use additional_includes from within the repo".into()));
        None
    }

    /// promptflow copies `additional_includes` into the flow snapshot, so a
    /// source may name a file that only exists there.
    fn provided_by_include(&self, path: &str) -> bool {
        let first = Path::new(path).components().next();
        self.flow.additional_includes.iter().any(|inc| {
            let included = self.flow.dir.join(&inc.value);
            included.file_name().map(Component::Normal) == first && included.exists()
        })
    }

    fn python_source(&mut self, node: &Node, file: &Path, pos: Pos) {
        let Ok(text) = std::fs::read_to_string(file) else {
            self.error(Code::Io, pos, format!("cannot read {}", file.display()), None);
            return;
        };
        let facts = python::scan(&text);
        let who = format!("node `{}`", node.name.value);
        match facts.tools.len() {
            // The worker imports the file before any line runs and reports what promptflow would.
            0 if facts.dynamic_tool => {}
            0 => self.error(
                Code::PythonNoTool,
                pos,
                format!("no `@tool` function in the python file of {who}"),
                Some("decorate exactly one function with `@tool` (from promptflow.core import tool)".into()),
            ),
            1 => {}
            _ => {
                let names: Vec<String> =
                    facts.tools.iter().map(|t| format!("`{}` (line {})", t.name, t.line)).collect();
                self.error(
                    Code::PythonMultipleTools,
                    pos,
                    format!(
                        "{} `@tool` functions in the python file of {who}: {}",
                        facts.tools.len(),
                        names.join(", ")
                    ),
                    Some("promptflow needs exactly one tool per file; move the others to their own files".into()),
                );
            }
        }
        if let Some(line) = facts.log_metric_line.filter(|_| !node.aggregation) {
            self.diags.push(
                Diagnostic::warning(
                    Code::LogMetricOutsideAggregation,
                    file,
                    Pos::new(line, 1),
                    format!("`log_metric` in non-aggregation {who} is ignored by promptflow"),
                )
                .with_hint("log metrics from a node with `aggregation: true`"),
            );
        }
    }

    fn template_source(&mut self, file: &Path) {
        let Ok(text) = std::fs::read_to_string(file) else {
            return;
        };
        if let Err(e) = template::check_syntax(&text) {
            self.diags.push(
                Diagnostic::error(
                    Code::JinjaSyntax,
                    file,
                    Pos::new(e.line, e.col),
                    format!("jinja template error: {}", e.message),
                )
                .with_hint("promptflow renders this with Jinja2; fix the template syntax"),
            );
        }
    }

    fn includes(&mut self) {
        for inc in &self.flow.additional_includes {
            let Some(path) = self.contained_path(&inc.value, inc.pos, "additional include") else {
                continue;
            };
            if !path.exists() {
                self.error(
                    Code::IncludeMissing,
                    inc.pos,
                    format!("additional include `{}` does not exist", inc.value),
                    Some("paths are relative to the folder holding flow.dag.yaml".into()),
                );
            }
        }
    }

    /// A declared requirements file should exist. promptflow runs the flow
    /// without it (`pf flow test` and `pf run create` install nothing, and
    /// promptflow's own `aggregation_node_failed` test flow declares one it
    /// does not ship), so this is a warning; an Azure ML environment built
    /// from the flow would fail on it.
    fn requirements(&mut self) {
        let Some(declared) = &self.flow.python_requirements_txt else {
            return;
        };
        let Some(path) = self.contained_path(&declared.value, declared.pos, "python requirements file") else {
            return;
        };
        if !path.is_file() {
            self.warning(
                Code::RequirementsMissing,
                declared.pos,
                format!("python requirements file `{}` does not exist; local runs install nothing", declared.value),
                Some("paths are relative to the folder holding flow.dag.yaml; an Azure ML environment built from this flow would fail on it".into()),
            );
        }
    }
}

/// Finds one concrete cycle among `remaining` nodes (all of which wait on others).
fn find_cycle(nodes: &[&Node], deps: &[HashSet<&str>], remaining: &[usize]) -> Vec<usize> {
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name.value.as_str(), i)).collect();
    let in_remaining: HashSet<usize> = remaining.iter().copied().collect();
    let mut path = vec![remaining[0]];
    loop {
        let current = *path.last().unwrap_or(&remaining[0]);
        // Follow dependencies in YAML order so the printed cycle is stable.
        let mut next_deps: Vec<usize> =
            deps[current].iter().filter_map(|d| index.get(d).copied()).filter(|i| in_remaining.contains(i)).collect();
        next_deps.sort_unstable();
        let Some(&next) = next_deps.first() else {
            return path;
        };
        if let Some(start) = path.iter().position(|&p| p == next) {
            return path.split_off(start);
        }
        path.push(next);
    }
}
