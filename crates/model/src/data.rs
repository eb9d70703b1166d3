//! Run input data: JSONL, JSON, CSV and TSV files (or a folder of them), read
//! the way promptflow's `load_data` does, keeping each row's file line so
//! errors can point at it.
//!
//! As in promptflow (pandas with `dtype=object`, `keep_default_na=False`), CSV
//! cells stay strings and empty cells are `""`; JSON keeps native types.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

/// One input row and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Index into [`Table::files`].
    pub file: usize,
    /// 1-based line in that file.
    pub line: u32,
    pub values: Map<String, Json>,
}

/// All rows of a data source, in promptflow's line order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub files: Vec<PathBuf>,
    pub rows: Vec<Row>,
}

impl Table {
    /// Columns in first-seen order across all rows.
    pub fn columns(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for row in &self.rows {
            for key in row.values.keys() {
                if !seen.contains(&key.as_str()) {
                    seen.push(key);
                }
            }
        }
        seen
    }

    /// The first row lacking `column`, if any row has it at all.
    pub fn first_row_without(&self, column: &str) -> Option<&Row> {
        self.rows.iter().find(|r| !r.values.contains_key(column))
    }

    pub fn has_column(&self, column: &str) -> bool {
        self.rows.iter().any(|r| r.values.contains_key(column))
    }

    pub fn file_of(&self, row: &Row) -> &Path {
        &self.files[row.file]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Malformed lines, at most [`MAX_REPORTED`] of them.
    #[error("{} malformed line(s) in data", lines.len())]
    Malformed { lines: Vec<MalformedLine> },
    #[error("{} has no rows", path.display())]
    Empty { path: PathBuf },
    #[error("{} is not a data format flow-ci reads (use .jsonl, .json, .csv or .tsv)", path.display())]
    Unsupported { path: PathBuf },
    /// A link in a data folder that leads out of the repository.
    #[error("{} is a link to {}, outside the repository {}", path.display(), target.display(), root.display())]
    Outside { path: PathBuf, target: PathBuf, root: PathBuf },
}

impl DataError {
    /// The error for a terminal: one `path:line:col: error: ...` per malformed line.
    pub fn report(&self) -> String {
        match self {
            DataError::Malformed { lines } => lines
                .iter()
                .map(|l| format!("{}:{}:{}: error: {}", l.path.display(), l.line, l.col, l.message))
                .collect::<Vec<_>>()
                .join("\n"),
            other => format!("error: {other}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MalformedLine {
    pub path: PathBuf,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

/// Stop collecting malformed lines after this many; one broken export
/// otherwise buries the report.
pub const MAX_REPORTED: usize = 20;

/// Reads a data file or every data file below a folder (sorted by path).
pub fn load(path: &Path) -> Result<Table, DataError> {
    let files = if path.is_dir() { data_files_below(path)? } else { vec![path.to_path_buf()] };
    let mut table = Table::default();
    let mut malformed = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).map_err(|source| DataError::Io { path: file.clone(), source })?;
        // pandas reads UTF-8 with a byte order mark (Excel's CSV export) as if it had none.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let rows = match extension(file).as_str() {
            "jsonl" => parse_jsonl(file, text, &mut malformed),
            "json" => parse_json(file, text, &mut malformed),
            "csv" => parse_delimited(file, text, b',', &mut malformed),
            "tsv" => parse_delimited(file, text, b'\t', &mut malformed),
            _ => return Err(DataError::Unsupported { path: file.clone() }),
        };
        table.rows.extend(rows.into_iter().map(|(line, values)| Row { file: index, line, values }));
    }
    table.files = files;
    if !malformed.is_empty() {
        malformed.truncate(MAX_REPORTED);
        return Err(DataError::Malformed { lines: malformed });
    }
    if table.rows.is_empty() {
        return Err(DataError::Empty { path: path.to_path_buf() });
    }
    Ok(table)
}

fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase()
}

/// The data files below `dir`. Links to folders are not followed (a link
/// loop made this walk run forever); a link to a file is read only when it
/// stays inside the repository.
fn data_files_below(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let root = crate::paths::boundary_root(dir);
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| DataError::Io { path: d.clone(), source })?;
        for entry in entries.flatten() {
            let p = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push(p);
            } else if !is_data_file(&p) || (kind.is_symlink() && !p.is_file()) {
                continue;
            } else if kind.is_symlink() && !crate::paths::is_inside(&p, &root) {
                let target = p.canonicalize().unwrap_or_default();
                return Err(DataError::Outside { path: p, target, root });
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn is_data_file(path: &Path) -> bool {
    ["jsonl", "json", "csv", "tsv"].contains(&extension(path).as_str())
}

type Parsed = Vec<(u32, Map<String, Json>)>;

fn line_no(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

fn parse_jsonl(path: &Path, text: &str, malformed: &mut Vec<MalformedLine>) -> Parsed {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        match serde_json::from_str::<Json>(trimmed) {
            Ok(Json::Object(map)) => rows.push((line_no(index), map)),
            Ok(other) => malformed.push(MalformedLine {
                path: path.to_path_buf(),
                line: line_no(index),
                col: 1,
                message: format!("expected a JSON object per line, found {}", json_kind(&other)),
            }),
            Err(e) => malformed.push(MalformedLine {
                path: path.to_path_buf(),
                line: line_no(index),
                col: u32::try_from(e.column()).unwrap_or(1).max(1),
                message: format!("invalid JSON: {}", json_error_text(&e)),
            }),
        }
    }
    rows
}

fn parse_json(path: &Path, text: &str, malformed: &mut Vec<MalformedLine>) -> Parsed {
    let bad = |line: usize, col: usize, message: String| MalformedLine {
        path: path.to_path_buf(),
        line: u32::try_from(line).unwrap_or(1).max(1),
        col: u32::try_from(col).unwrap_or(1).max(1),
        message,
    };
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Array(items)) => {
            let mut rows = Vec::new();
            for item in items {
                match item {
                    Json::Object(map) => rows.push((1, map)),
                    other => {
                        malformed.push(bad(1, 1, format!("expected an array of objects, found {}", json_kind(&other))))
                    }
                }
            }
            rows
        }
        Ok(Json::Object(map)) => vec![(1, map)],
        Ok(other) => {
            malformed.push(bad(1, 1, format!("expected an array of objects, found {}", json_kind(&other))));
            vec![]
        }
        Err(e) => {
            malformed.push(bad(e.line(), e.column(), format!("invalid JSON: {}", json_error_text(&e))));
            vec![]
        }
    }
}

fn parse_delimited(path: &Path, text: &str, delimiter: u8, malformed: &mut Vec<MalformedLine>) -> Parsed {
    if let Some(line) = unclosed_quote(text, delimiter) {
        let message = "a quoted field opened here is never closed (pandas: EOF inside string)".to_string();
        malformed.push(MalformedLine { path: path.to_path_buf(), line, col: 1, message });
        return vec![];
    }
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => pandas_column_names(h.iter()),
        Err(e) => {
            malformed.push(csv_error(path, &e));
            return vec![];
        }
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        match record {
            Ok(rec) => {
                let line = rec.position().map_or(1, |p| u32::try_from(p.line()).unwrap_or(u32::MAX));
                let values =
                    headers.iter().zip(rec.iter()).map(|(h, v)| (h.clone(), Json::String(v.to_string()))).collect();
                rows.push((line, values));
            }
            Err(e) => malformed.push(csv_error(path, &e)),
        }
    }
    rows
}

/// Column names as pandas' `read_csv` gives them (pandas 2.3,
/// io/parsers/python_parser.py, `_infer_columns`; the C parser does the
/// same): an empty name is `Unnamed: i`; a repeated name gets `.1`, `.2`, …,
/// skipping a suffix that names another column (`a,a,a.1` gives `a, a.2,
/// a.1`), so `${data.a}` reads the first `a` column, as promptflow does (the
/// csv crate alone would let the last one win). Unnamed columns are renamed
/// after the named ones, as pandas orders them.
fn pandas_column_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut columns: Vec<String> = names.map(str::to_string).collect();
    let unnamed: Vec<usize> = (0..columns.len()).filter(|&i| columns[i].is_empty()).collect();
    for &i in &unnamed {
        columns[i] = format!("Unnamed: {i}");
    }
    let order = (0..columns.len()).filter(|i| !unnamed.contains(i)).chain(unnamed.iter().copied());
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for i in order.collect::<Vec<_>>() {
        let old = columns[i].clone();
        let mut col = old.clone();
        let mut count = counts.get(&col).copied().unwrap_or(0);
        while count > 0 {
            counts.insert(old.clone(), count + 1);
            col = format!("{old}.{count}");
            if columns.contains(&col) {
                count += 1;
            } else {
                count = counts.get(&col).copied().unwrap_or(0);
            }
        }
        columns[i] = col.clone();
        counts.insert(col, count + 1);
    }
    columns
}

/// The line where a quoted field opens and never closes, if one does: the
/// csv crate reads such a field to the end of the file without complaint.
fn unclosed_quote(text: &str, delimiter: u8) -> Option<u32> {
    let (mut line, mut opened, mut quoted, mut field_start) = (1u32, 0u32, false, true);
    let mut bytes = text.bytes().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'"' if quoted && bytes.peek() == Some(&b'"') => {
                bytes.next();
            }
            b'"' if quoted => quoted = false,
            b'"' if field_start => (quoted, opened) = (true, line),
            b'\n' => line += 1,
            _ => {}
        }
        field_start = !quoted && (b == delimiter || b == b'\n');
    }
    quoted.then_some(opened)
}

fn csv_error(path: &Path, e: &csv::Error) -> MalformedLine {
    let line = e.position().map_or(1, |p| u32::try_from(p.line()).unwrap_or(u32::MAX));
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("row has {len} fields but the header has {expected_len}")
        }
        _ => format!("invalid CSV: {e}"),
    };
    MalformedLine { path: path.to_path_buf(), line, col: 1, message }
}

/// serde_json's message without its " at line L column C" tail: the
/// diagnostic carries the position already.
fn json_error_text(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn jsonl_rows_keep_lines_and_types() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.jsonl", "{\"a\": 1, \"b\": \"x\"}\n\n{\"a\": 2}\n");
        let t = load(&p).unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[1].line, 3);
        assert_eq!(t.columns(), vec!["a", "b"]);
        assert_eq!(t.first_row_without("b").unwrap().line, 3);
        assert_eq!(t.rows[0].values["a"], serde_json::json!(1));
    }

    #[test]
    fn malformed_jsonl_lines_are_all_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.jsonl", "{\"a\": 1}\n{\"a\": \n[1]\n");
        let Err(DataError::Malformed { lines }) = load(&p) else { panic!() };
        assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), vec![2, 3]);
        assert!(lines[1].message.contains("found an array"));
    }

    #[test]
    fn csv_cells_are_strings_and_ragged_rows_fail() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.csv", "q,n\nhello,1\n,2\n");
        let t = load(&p).unwrap();
        assert_eq!(t.rows[0].values["n"], serde_json::json!("1"));
        assert_eq!(t.rows[1].values["q"], serde_json::json!(""));
        assert_eq!(t.rows[1].line, 3);
        let p = write(dir.path(), "bad.csv", "q,n\nhello,1,extra\n");
        let Err(DataError::Malformed { lines }) = load(&p) else { panic!() };
        assert_eq!(lines[0].line, 2);
    }

    #[test]
    fn duplicate_headers_keep_the_first_column_like_pandas() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "d.csv", "a,b,a,a\n1,2,3,4\n");
        let table = load(&path).unwrap();
        let row = &table.rows[0].values;
        assert_eq!(row["a"], "1");
        assert_eq!(row["a.1"], "3");
        assert_eq!(row["a.2"], "4");
    }

    /// The names pandas 2.3.3 (promptflow 1.18.5's) gives these headers:
    /// `pd.read_csv(io.StringIO(header + "\\n" + row), dtype=object, keep_default_na=False).columns`.
    #[test]
    fn column_names_are_the_ones_pandas_gives() {
        let cases: [(&str, &[&str]); 8] = [
            ("a,a.1,a", &["a", "a.1", "a.2"]),
            ("a,a,a.1", &["a", "a.2", "a.1"]),
            ("a.1,a,a", &["a.1", "a", "a.2"]),
            ("x,x.1,x,x.1", &["x", "x.1", "x.2", "x.1.1"]),
            ("a,a.1,a.1", &["a", "a.1", "a.1.1"]),
            ("a,,b", &["a", "Unnamed: 1", "b"]),
            (",a,a", &["Unnamed: 0", "a", "a.1"]),
            ("\u{feff}q,r", &["q", "r"]),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (header, expected) in cases {
            let cells = (0..expected.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
            let path = write(dir.path(), "d.csv", &format!("{header}\n{cells}\n"));
            let row = &load(&path).unwrap().rows[0].values;
            let named: Map<String, Json> =
                expected.iter().enumerate().map(|(i, name)| (name.to_string(), Json::from(i.to_string()))).collect();
            assert_eq!(row, &named, "{header:?}");
        }
    }

    #[test]
    fn an_unclosed_quote_is_malformed_where_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "d.csv", "a,b\n1,\"ok \"\"x\"\"\"\n2,\"never closed\n3,4\n");
        match load(&path) {
            Err(DataError::Malformed { lines }) => assert_eq!(lines[0].line, 3, "{lines:?}"),
            other => panic!("{other:?}"),
        }
        let fine = write(dir.path(), "e.csv", "a,b\n1,\"multi\nline\"\n2,x\"y\n");
        assert_eq!(load(&fine).unwrap().rows.len(), 2);
    }

    #[test]
    fn empty_and_unknown_formats_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(&write(dir.path(), "e.jsonl", "\n")), Err(DataError::Empty { .. })));
        assert!(matches!(load(&write(dir.path(), "x.parquet", "")), Err(DataError::Unsupported { .. })));
    }
}
