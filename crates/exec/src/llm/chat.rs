//! promptflow's chat-prompt parsing (`promptflow.tools.common.parse_chat`):
//! a rendered template with `# system:` / `# user:` / `# assistant:` /
//! `# function:` / `# tool:` lines becomes the chat `messages` list, with the
//! same regular expressions, so flow-ci sends byte-identical messages.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value as Json};

pub const VALID_ROLES: &[&str] = &["system", "user", "assistant", "function", "tool"];

/// promptflow: `(?i)^\s*#?\s*(system|user|assistant|function|tool)\s*:\s*\n`, MULTILINE.
static SEPARATOR: LazyLock<Regex> =
    LazyLock::new(|| regex_or_never(r"(?im)^\s*#?\s*(system|user|assistant|function|tool)\s*:\s*\n"));
static NAME_AND_CONTENT: LazyLock<Regex> =
    LazyLock::new(|| regex_or_never(r"(?s)\n*#{0,2}\s*name\s*:\s*\n+\s*(\S+)\s*\n*#{0,2}\s*content\s*:\s*\n?(.*)"));
static TOOL_CALL_ID_AND_CONTENT: LazyLock<Regex> = LazyLock::new(|| {
    regex_or_never(r"(?s)\n*#{0,2}\s*tool_call_id\s*:\s*\n+\s*(\S+)\s*\n*#{0,2}\s*content\s*:\s*\n?(.*)")
});
static TOOL_CALLS: LazyLock<Regex> =
    LazyLock::new(|| regex_or_never(r"(?s)\n*#{0,2}\s*tool_calls\s*:\s*\n+\s*(\[.*?\])"));

/// The patterns are constants; a failure to compile is a bug caught by the
/// unit tests, so fall back to a regex that never matches instead of panicking.
fn regex_or_never(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|_| Regex::new(r"[^\s\S]").unwrap_or_else(|_| unreachable!()))
}

/// promptflow's error types for malformed chat prompts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error(
        "The Chat API requires a specific format for prompt definition, and the prompt should include separate lines as role delimiters: 'system:\\n','user:\\n','assistant:\\n','function:\\n','tool:\\n'. Current parsed role '{0}' does not meet the requirement. If you intend to use the Completion API, please select the appropriate API type and deployment name. If you do intend to use the Chat API, please refer to the guideline at https://aka.ms/pfdoc/chat-prompt or view the samples in our gallery that contain 'Chat' in the name."
    )]
    InvalidRole(String),
    #[error(
        "Failed to parse function role prompt. Please make sure the prompt follows the format: 'name:\\nfunction_name\\ncontent:\\nfunction_content'."
    )]
    FunctionRoleInvalidFormat,
    #[error(
        "Failed to parse tool role prompt. Please make sure the prompt follows the format: 'tool_call_id:\\ntool_call_id\\ncontent:\\ntool_content'."
    )]
    ToolRoleInvalidFormat,
}

impl ChatError {
    /// The promptflow exception name, for run records.
    pub fn kind(&self) -> &'static str {
        match self {
            ChatError::InvalidRole(_) => "ChatAPIInvalidRole",
            ChatError::FunctionRoleInvalidFormat => "ChatAPIFunctionRoleInvalidFormat",
            ChatError::ToolRoleInvalidFormat => "ChatAPIToolRoleInvalidFormat",
        }
    }
}

/// Splits like Python's `re.split` with one capturing group: text, role, text, role, ...
fn split_keeping_roles(text: &str) -> Vec<&str> {
    let mut chunks = Vec::new();
    let mut last = 0;
    for caps in SEPARATOR.captures_iter(text) {
        let (Some(all), Some(role)) = (caps.get(0), caps.get(1)) else { continue };
        chunks.push(&text[last..all.start()]);
        chunks.push(role.as_str());
        last = all.end();
    }
    chunks.push(&text[last..]);
    chunks
}

/// Parses a rendered chat prompt into OpenAI chat messages.
pub fn parse_chat(chat: &str) -> Result<Vec<Map<String, Json>>, ChatError> {
    let mut messages: Vec<Map<String, Json>> = Vec::new();
    for chunk in split_keeping_roles(chat) {
        let last = messages.last_mut();
        let role = last.as_ref().and_then(|m| m.get("role")).and_then(Json::as_str).map(str::to_string);
        let Some(last) = last else {
            start_message(&mut messages, chunk)?;
            continue;
        };
        let has_content = last.contains_key("content");
        if role.as_deref() == Some("tool") && !has_content {
            let caps = TOOL_CALL_ID_AND_CONTENT.captures(chunk).ok_or(ChatError::ToolRoleInvalidFormat)?;
            last.insert("tool_call_id".into(), Json::String(group(&caps, 1)));
            last.insert("content".into(), Json::String(group(&caps, 2).trim().to_string()));
            continue;
        }
        if role.as_deref() == Some("assistant")
            && let Some(calls) = TOOL_CALLS.captures(chunk).and_then(|c| python_literal(&group(&c, 1)))
        {
            last.insert("tool_calls".into(), calls);
            continue;
        }
        if !has_content && !last.contains_key("tool_calls") {
            match NAME_AND_CONTENT.captures(chunk) {
                Some(caps) => {
                    last.insert("name".into(), Json::String(group(&caps, 1)));
                    last.insert("content".into(), Json::String(group(&caps, 2).trim().to_string()));
                }
                None if role.as_deref() == Some("function") => return Err(ChatError::FunctionRoleInvalidFormat),
                None => {
                    last.insert("content".into(), Json::String(chunk.trim().to_string()));
                }
            }
        } else {
            start_message(&mut messages, chunk)?;
        }
    }
    Ok(messages)
}

/// A chunk outside a message is a role name, or blank.
fn start_message(messages: &mut Vec<Map<String, Json>>, chunk: &str) -> Result<(), ChatError> {
    if chunk.trim().is_empty() {
        return Ok(());
    }
    let role = chunk.trim().to_lowercase();
    if !VALID_ROLES.contains(&role.as_str()) {
        return Err(ChatError::InvalidRole(role));
    }
    let mut message = Map::new();
    message.insert("role".into(), Json::String(role));
    messages.push(message);
    Ok(())
}

fn group(caps: &regex::Captures<'_>, i: usize) -> String {
    caps.get(i).map_or_else(String::new, |m| m.as_str().to_string())
}

/// `ast.literal_eval` for the literals a `tool_calls:` list holds: lists,
/// dicts, strings, numbers, `True`, `False`, `None`. `None` when it is not one.
pub fn python_literal(text: &str) -> Option<Json> {
    let mut p = LiteralParser { chars: text.chars().collect(), at: 0 };
    let value = p.value()?;
    p.skip_space();
    (p.at == p.chars.len()).then_some(value)
}

struct LiteralParser {
    chars: Vec<char>,
    at: usize,
}

impl LiteralParser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Json> {
        self.skip_space();
        match self.peek()? {
            '[' => self.sequence('[', ']').map(Json::Array),
            '(' => self.sequence('(', ')').map(Json::Array),
            '{' => self.dict(),
            '\'' | '"' => self.string().map(Json::String),
            _ => self.word(),
        }
    }

    fn sequence(&mut self, open: char, close: char) -> Option<Vec<Json>> {
        self.eat(open);
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Some(items);
            }
            items.push(self.value()?);
            if !self.eat(',') {
                return self.eat(close).then_some(items);
            }
        }
    }

    fn dict(&mut self) -> Option<Json> {
        self.eat('{');
        let mut map = Map::new();
        loop {
            if self.eat('}') {
                return Some(Json::Object(map));
            }
            let key = match self.value()? {
                Json::String(s) => s,
                other => other.to_string(),
            };
            if !self.eat(':') {
                return None;
            }
            map.insert(key, self.value()?);
            if !self.eat(',') {
                return self.eat('}').then_some(Json::Object(map));
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        self.at += 1;
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            self.at += 1;
            match c {
                c if c == quote => return Some(out),
                '\\' => {
                    let e = self.peek()?;
                    self.at += 1;
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
    }

    fn word(&mut self) -> Option<Json> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '+' | '_')) {
            self.at += 1;
        }
        let word: String = self.chars[start..self.at].iter().collect();
        match word.as_str() {
            "True" => Some(Json::Bool(true)),
            "False" => Some(Json::Bool(false)),
            "None" => Some(Json::Null),
            w => w
                .parse::<i64>()
                .map(Json::from)
                .ok()
                .or_else(|| w.parse::<f64>().ok().and_then(|f| serde_json::Number::from_f64(f).map(Json::Number))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(text: &str) -> Json {
        Json::Array(parse_chat(text).unwrap().into_iter().map(Json::Object).collect())
    }

    #[test]
    fn roles_split_the_prompt() {
        assert_eq!(
            messages("# system:\nYou are helpful.\n\n# user:\n  Hi there  \n"),
            json!([{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi there"}])
        );
        assert_eq!(
            messages("System:\nA\nUSER :\nB\n"),
            json!([{"role": "system", "content": "A"}, {"role": "user", "content": "B"}])
        );
    }

    #[test]
    fn a_header_without_a_newline_is_not_a_header() {
        assert_eq!(messages("# user:\nhi\n# assistant:"), json!([{"role": "user", "content": "hi\n# assistant:"}]));
    }

    #[test]
    fn text_before_the_first_role_is_an_error() {
        let err = parse_chat("hello\n# user:\nhi\n").unwrap_err();
        assert_eq!(err, ChatError::InvalidRole("hello".into()));
    }

    #[test]
    fn names_tool_ids_and_tool_calls() {
        assert_eq!(
            messages(
                "# user:\n## name:\nada\n## content:\nhello\n# function:\nname:\nget_weather\ncontent:\n{\"t\": 20}\n"
            ),
            json!([{"role": "user", "name": "ada", "content": "hello"}, {"role": "function", "name": "get_weather", "content": "{\"t\": 20}"}])
        );
        assert_eq!(
            messages(
                "# assistant:\ntool_calls:\n[{'id': 'c1', 'type': 'function', 'function': {'name': 'f', 'arguments': '{}'}}]\n# tool:\ntool_call_id:\nc1\ncontent:\nok\n"
            ),
            json!([
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}
            ])
        );
        assert_eq!(parse_chat("# function:\nno name here\n").unwrap_err(), ChatError::FunctionRoleInvalidFormat);
    }

    #[test]
    fn empty_messages_keep_an_empty_content() {
        assert_eq!(
            messages("# system:\n# user:\nhi\n"),
            json!([{"role": "system", "content": ""}, {"role": "user", "content": "hi"}])
        );
    }

    #[test]
    fn python_literals() {
        assert_eq!(
            python_literal("[1, 'a', {\"k\": None}, (True, 2.5)]"),
            Some(json!([1, "a", {"k": null}, [true, 2.5]]))
        );
        assert_eq!(python_literal("[1, 2"), None);
    }
}
