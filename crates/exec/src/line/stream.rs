//! A line watched while it runs, for `serve` asked for a stream.
//!
//! promptflow's serving runs the whole flow with its generators unconsumed
//! (flow_executor.py, exec_line with allow_generator_output), then sends the
//! outputs that are no generator as the first event and each item of the one
//! that is as it is read (core/_serving/response_creator.py,
//! ResponseCreator.generate). flow-ci's python nodes consume their
//! generators in the worker, so the worker reports them as it goes
//! (`pool::Progress`): the other outputs are known once every node but the
//! streaming ones has ended, and each item reaches the client when the node
//! yields it.
//!
//! Where flow-ci differs: a node that reads a generator node's output waits
//! for the joined text (promptflow hands it the generator itself), so a flow
//! whose other outputs depend on the generator sends them, and the items,
//! only when the generator has ended.

use serde_json::{Map, Value as Json};

use super::{Engine, LineState, Status};
use crate::pool::Progress;
use model::flow::reference::{Assignment, PathStep, property_path};

/// What a watched line reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum LineEvent {
    /// The flow outputs that are no generator, sent once every node but the
    /// streaming ones has ended; `streams` names the outputs that are
    /// generators (more than one is refused by promptflow's serving).
    Head { outputs: Map<String, Json>, streams: Vec<String> },
    /// One item of the flow output `output`, as its node yielded it.
    Item { output: String, value: Json },
}

/// Who hears a watched line's events (from the line's own thread).
pub type Observer<'a> = &'a (dyn Fn(LineEvent) + Sync);

/// A watched line's bookkeeping.
pub(super) struct Watch<'o> {
    observer: Observer<'o>,
    /// For each step: the flow outputs its generators feed, as (key path,
    /// output name), once its worker named its generators.
    streaming: Vec<Vec<(Vec<String>, String)>>,
    head_sent: bool,
}

impl<'o> Watch<'o> {
    pub(super) fn new(observer: Observer<'o>, steps: usize) -> Watch<'o> {
        Watch { observer, streaming: vec![Vec::new(); steps], head_sent: false }
    }
}

/// `${node.output.a.b}`'s key path (`["a", "b"]`); `None` when it indexes a
/// list, where no generator is looked for.
pub(super) fn output_key_path(property: &str) -> Option<Vec<String>> {
    property_path(property)
        .into_iter()
        .map(|step| match step {
            PathStep::Key(k) => Some(k),
            PathStep::Index(_) => None,
        })
        .collect()
}

impl Engine<'_> {
    /// A worker's report for step `i`: its generators become the flow
    /// outputs they feed, its items are passed on for those outputs.
    pub(super) fn on_progress(&self, watch: &mut Watch, i: usize, progress: Progress) {
        match progress {
            Progress::Generators(paths) => watch.streaming[i] = self.stream_targets(i, &paths),
            Progress::Item(path, value) => {
                for (_, output) in watch.streaming[i].iter().filter(|(at, _)| *at == path) {
                    (watch.observer)(LineEvent::Item { output: output.clone(), value: value.clone() });
                }
            }
        }
    }

    /// The flow outputs that name one of step `i`'s generators, by key path.
    fn stream_targets(&self, i: usize, generators: &[Vec<String>]) -> Vec<(Vec<String>, String)> {
        let step = &self.prepared.steps[i];
        self.prepared
            .flow
            .outputs
            .iter()
            .filter_map(|output| {
                let Some(Assignment::Node { node, section, property }) = output.reference.as_ref().map(|r| &r.value)
                else {
                    return None;
                };
                let path = output_key_path(property).filter(|_| *node == step.name && section == "output")?;
                generators.contains(&path).then(|| (path, output.name.value.clone()))
            })
            .collect()
    }

    /// Sends the head once only streaming nodes still run and every other
    /// flow output can be read; else waits (the line's end gives it then).
    pub(super) fn send_head(&self, watch: &mut Watch, state: &LineState) {
        if watch.head_sent {
            return;
        }
        let streaming = |i: usize| state.status[i] == Status::Running && !watch.streaming[i].is_empty();
        let mut line_steps = self.prepared.line_steps().map(|(i, _)| i);
        let settled =
            line_steps.all(|i| matches!(state.status[i], Status::Completed | Status::Bypassed) || streaming(i));
        if !settled || !(0..state.status.len()).any(streaming) {
            return;
        }
        let streams: Vec<String> = watch.streaming.iter().flatten().map(|(_, name)| name.clone()).collect();
        let Some(outputs) = self.head_outputs(state, &streams) else { return };
        watch.head_sent = true;
        (watch.observer)(LineEvent::Head { outputs, streams });
    }

    /// The flow outputs but `streams`, or `None` while one of them waits for
    /// a node still running (or cannot be read: the line's end says why).
    fn head_outputs(&self, state: &LineState, streams: &[String]) -> Option<Map<String, Json>> {
        let mut outputs = Map::new();
        for output in &self.prepared.flow.outputs {
            let Some(reference) = output.reference.as_ref().filter(|_| !streams.contains(&output.name.value)) else {
                continue;
            };
            if let Some(i) = reference.value.node().and_then(|n| self.prepared.step_index(n)) {
                if self.prepared.steps[i].aggregation {
                    continue;
                }
                if state.status[i] == Status::Running {
                    return None;
                }
            }
            outputs.insert(output.name.value.clone(), self.resolve(&reference.value, state).ok()?.0);
        }
        Some(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_looked_for_under_keys_only() {
        assert_eq!(output_key_path(""), Some(vec![]));
        assert_eq!(output_key_path("answer.text"), Some(vec!["answer".to_string(), "text".to_string()]));
        assert_eq!(output_key_path("items[0]"), None);
    }
}
