//! `flow test --node`: one node run alone on the inputs it is given, as
//! promptflow runs it (_sdk/_orchestrator/test_submitter.py resolve_data,
//! then executor/flow_executor.py load_and_exec_node).
//!
//! pf does not hand each parameter its given value: it first splits what is
//! given into flow inputs and one output per upstream node, then resolves
//! every parameter against those, as a line would. So two parameters that
//! read the same node see one output (a later `${a.output.key}` writes its
//! key into the `${a.output}` given before it), and a value given by its
//! reference text is used once.

use std::time::Instant;

use serde_json::{Map, Value as Json};

use super::{Engine, Invocation, NodeRun, RunError, access, convert_input};
use crate::llm::request::truthy;
use model::flow::dag::Flow;
use model::flow::reference::Assignment;

/// What a `--node` run was given, split as pf's resolve_data splits it.
#[derive(Debug, Default, PartialEq)]
struct Given {
    /// Flow inputs by name, a default where nothing was given.
    flow: Map<String, Json>,
    /// Upstream node outputs by node name.
    outputs: Map<String, Json>,
    /// Parameters given nothing, with no default.
    missing: Vec<String>,
}

impl Engine<'_> {
    /// `pf flow test --node`: runs one node alone. Each input is taken from
    /// `given` by its reference text (`inputs.x`, `other.output`,
    /// `other.output.key`) or by parameter name; flow inputs fall back to
    /// their default and convert to their declared type. `activate` is
    /// ignored; an aggregation node gets 1-item lists.
    pub fn run_single_node(&self, name: &str, given: &Map<String, Json>) -> Result<NodeRun, RunError> {
        let i = self
            .prepared
            .step_index(name)
            .ok_or_else(|| RunError::new("NodeNotFound", format!("Node {name} not found in flow")))?;
        let step = &self.prepared.steps[i];
        let split = split(&step.inputs, &self.prepared.flow, given);
        if !split.missing.is_empty() {
            let list = split.missing.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(", ");
            return Err(RunError::new(
                "InputNotFound",
                format!("Required input(s) [{list}] are missing for \"{name}\"."),
            ));
        }
        let mut call = Invocation::default();
        for (param, assignment) in &step.inputs {
            let value = match assignment {
                Assignment::Literal(v) => {
                    call.literals.push(param.clone());
                    call.kwargs.insert(param.clone(), v.clone());
                    continue;
                }
                Assignment::FlowInput(input) => {
                    self.note_image(&mut call, param, input);
                    self.flow_input(name, param, input, &split.flow)?
                }
                Assignment::Node { node, property, .. } => {
                    let output = split.outputs.get(node).unwrap_or(&Json::Null);
                    access(output, node, property)?
                }
            };
            let lined = step.aggregation && lined_up(&self.prepared.flow, assignment);
            call.kwargs.insert(param.clone(), if lined { Json::Array(vec![value]) } else { value });
        }
        let record = self.run_step(i, call, Instant::now() + self.line_timeout, None);
        match record.error.clone() {
            Some(e) => Err(e),
            None => Ok(record),
        }
    }

    /// A flow input converted to its declared type, as load_and_exec_node
    /// converts them (FlowValidator.convert_flow_inputs_for_node: `--inputs
    /// n=3` is the int 3 for an `int` input).
    fn flow_input(&self, node: &str, param: &str, input: &str, flow: &Map<String, Json>) -> Result<Json, RunError> {
        let value = flow.get(input).unwrap_or(&Json::Null);
        let declared = self.prepared.flow.input(input);
        let ty = declared.and_then(|d| d.ty.as_ref()).map_or("string", |t| t.value.as_str());
        convert_input(ty, value).map_err(|_| {
            RunError::new(
                "InputTypeError",
                format!("The input for node is incorrect. Value for input '{param}' of node '{node}' is not type '{ty}'. Please review and rectify the input data."),
            )
        })
    }
}

/// pf's resolve_data for a node: in the node's input order, each value is
/// taken (and used up) by reference text, else by parameter name; a flow
/// input not given takes its default; a `${a.output.key}` writes `key` into
/// a's output (the given dict's `key` when it has one, else the value when
/// it is truthy), a `${a.output}` replaces a's output.
fn split(inputs: &[(String, Assignment)], flow: &Flow, given: &Map<String, Json>) -> Given {
    let mut left = given.clone();
    let mut out = Given::default();
    for (param, assignment) in inputs {
        let reference = match assignment {
            Assignment::Literal(_) => continue,
            Assignment::FlowInput(input) => format!("inputs.{input}"),
            Assignment::Node { node, section, property } if property.is_empty() => format!("{node}.{section}"),
            Assignment::Node { node, section, property } => format!("{node}.{section}.{property}"),
        };
        let value = left.remove(&reference).or_else(|| left.remove(param));
        match assignment {
            Assignment::FlowInput(input) => {
                let default = || flow.input(input).and_then(|i| i.default.clone()).filter(|d| !d.is_null());
                match value.or_else(default) {
                    Some(v) => drop(out.flow.insert(input.clone(), v)),
                    None => out.missing.push(param.clone()),
                }
            }
            Assignment::Node { node, property, .. } => match value {
                None => out.missing.push(param.clone()),
                Some(v) if property.is_empty() => drop(out.outputs.insert(node.clone(), v)),
                Some(v) => keep_property(&mut out.outputs, node, property, v),
            },
            Assignment::Literal(_) => {}
        }
    }
    out
}

/// `dependency_nodes_outputs[node][property] = ...` in resolve_data.
fn keep_property(outputs: &mut Map<String, Json>, node: &str, property: &str, value: Json) {
    let entry = outputs.entry(node.to_string()).or_insert_with(|| Json::Object(Map::new()));
    let Json::Object(fields) = entry else { return };
    match value {
        Json::Object(mut given) if given.contains_key(property) => {
            let picked = given.remove(property).unwrap_or(Json::Null);
            fields.insert(property.to_string(), picked);
        }
        v if truthy(Some(&v)) => drop(fields.insert(property.to_string(), v)),
        _ => {}
    }
}

/// Whether an aggregation node's input is a list of lines in pf's node
/// test: flow inputs and line nodes' outputs, not literals nor another
/// aggregation node's output (load_and_exec_node, `flow.is_normal_node`).
fn lined_up(flow: &Flow, assignment: &Assignment) -> bool {
    match assignment {
        Assignment::FlowInput(_) => true,
        Assignment::Node { node, .. } => !flow.node(node).is_some_and(|n| n.aggregation),
        Assignment::Literal(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs(pairs: &[(&str, &str)]) -> Vec<(String, Assignment)> {
        pairs.iter().map(|(k, v)| (k.to_string(), Assignment::parse(&json!(v)))).collect()
    }

    fn given(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    fn flow(yaml: &str) -> Flow {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flow.dag.yaml"), yaml).unwrap();
        let mut diags = model::diag::Diagnostics::default();
        model::flow::dag::load(dir.path(), &mut diags).unwrap()
    }

    const FLOW: &str = "inputs:\n  n:\n    type: int\n  m:\n    type: int\n    default: 7\noutputs: {}\nnodes: []\n";

    #[test]
    fn a_later_property_writes_into_the_output_given_before_it() {
        // pf flow test --node total with {"scale.output": {"n": 8}, "picked": {"n": 5}}
        // gives scaled={"n": 5} and picked=5 (tests/flows/python-nodes/node-inputs).
        let ins = inputs(&[("scaled", "${scale.output}"), ("picked", "${scale.output.n}")]);
        let split = split(&ins, &flow(FLOW), &given(json!({"scale.output": {"n": 8}, "picked": {"n": 5}})));
        assert_eq!(split.outputs, given(json!({"scale": {"n": 5}})));
        assert!(split.missing.is_empty());
    }

    #[test]
    fn the_reference_text_wins_and_is_used_once() {
        let ins = inputs(&[("a", "${inputs.n}"), ("b", "${inputs.n}"), ("c", "${inputs.m}")]);
        let split = split(&ins, &flow(FLOW), &given(json!({"inputs.n": 1, "a": 2})));
        // a takes inputs.n, b then finds only nothing by either name and n has no default.
        assert_eq!(split.flow, given(json!({"n": 1, "m": 7})));
        assert_eq!(split.missing, vec!["b".to_string()]);
    }

    #[test]
    fn a_falsy_value_for_a_property_is_dropped() {
        let ins = inputs(&[("x", "${a.output.k}")]);
        let split = split(&ins, &flow(FLOW), &given(json!({"x": ""})));
        assert_eq!(split.outputs, given(json!({"a": {}})));
    }
}
