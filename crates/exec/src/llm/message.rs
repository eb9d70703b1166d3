//! The chat message an llm node with `tools` or `functions` returns, shaped
//! as promptflow-tools returns it: `completion.model_dump()["choices"][0]["message"]`
//! (`promptflow/tools/common.py`, `post_process_chat_api_response`). The
//! openai SDK's pydantic models dump every field they declare, `None` when
//! the service left it out, then the fields they do not know, so flows that
//! branch on `"function_call" in message` see the key even when it is null.

use serde_json::{Map, Value as Json};

/// `ChatCompletionMessage`'s fields in declaration order (openai 1.x in
/// promptflow's pinned environment).
const MESSAGE: &[&str] = &["content", "refusal", "role", "annotations", "audio", "function_call", "tool_calls"];
/// `FunctionCall` and a tool call's `Function`.
const FUNCTION: &[&str] = &["arguments", "name"];
/// `ChatCompletionMessageToolCall`.
const TOOL_CALL: &[&str] = &["id", "function", "type"];

/// `message` as the SDK's `model_dump()` gives it.
pub fn sdk_message(message: &Json) -> Json {
    let Some(fields) = message.as_object() else { return message.clone() };
    let mut dumped = dump(fields, MESSAGE);
    if let Some(call) = dumped.get_mut("function_call") {
        *call = dump_object(call, FUNCTION);
    }
    if let Some(Json::Array(calls)) = dumped.get_mut("tool_calls") {
        for call in calls {
            *call = dump_object(call, TOOL_CALL);
            if let Some(function) = call.get_mut("function") {
                *function = dump_object(function, FUNCTION);
            }
        }
    }
    Json::Object(dumped)
}

fn dump_object(value: &Json, declared: &[&str]) -> Json {
    match value.as_object() {
        Some(fields) => Json::Object(dump(fields, declared)),
        None => value.clone(),
    }
}

/// Declared fields first (null when absent), then the others as they came.
fn dump(fields: &Map<String, Json>, declared: &[&str]) -> Map<String, Json> {
    let mut out: Map<String, Json> =
        declared.iter().map(|k| (k.to_string(), fields.get(*k).cloned().unwrap_or(Json::Null))).collect();
    for (k, v) in fields {
        if !declared.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Expected values printed by promptflow's environment:
    /// `ChatCompletionMessage.model_validate(m).model_dump()`.
    #[test]
    fn absent_fields_are_null_in_the_sdk_order() {
        let m =
            json!({"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}, "x": 1});
        let dumped = sdk_message(&m);
        assert_eq!(
            serde_json::to_string(&dumped).unwrap(),
            r#"{"content":null,"refusal":null,"role":"assistant","annotations":null,"audio":null,"function_call":{"arguments":"{}","name":"f"},"tool_calls":null,"x":1}"#
        );
    }

    #[test]
    fn tool_calls_are_dumped_too() {
        let m = json!({"role": "assistant", "content": "hi",
                       "tool_calls": [{"type": "function", "id": "a", "function": {"name": "f", "arguments": "{}"}}]});
        let dumped = sdk_message(&m);
        assert_eq!(
            serde_json::to_string(&dumped["tool_calls"]).unwrap(),
            r#"[{"id":"a","function":{"arguments":"{}","name":"f"},"type":"function"}]"#
        );
        assert_eq!(dumped["function_call"], Json::Null);
    }
}
