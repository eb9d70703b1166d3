//! Images as promptflow writes them in JSON (promptflow-core
//! `_utils/multimedia_utils.py`), in the flow's `message_format`:
//! `basic` (BasicMultimediaProcessor), a one-key dict
//! `{"data:image/<ext>;path|base64|url": value}` (`MIME_PATTERN`), or
//! `openai-vision` (OpenaiVisionMultimediaProcessor), OpenAI's content parts
//! `{"type": "image_file", "image_file": {"path": p}}` and
//! `{"type": "image_url", "image_url": {"url": u}}`.
//!
//! Python workers hand an `Image` back as its base64 form in the flow's
//! format (`convert_multimedia_data_to_base64_dict`: the base64 dict, or an
//! `image_url` holding a `data:` URL), so a line holds its images in memory
//! and the next node gets the same bytes. Where promptflow persists an image
//! (a run's outputs and details, `flow test`'s outputs) this module writes
//! the bytes to a file named by a UUID and puts the path reference in its
//! place, as `persist_multimedia_data` does; relative paths in data are
//! resolved against the data file's folder, as
//! `resolve_multimedia_data_recursively`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value as Json};

/// How a flow writes its images: its `message_format`
/// (MultimediaProcessor.create).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Basic,
    OpenaiVision,
}

impl Format {
    /// `openai-vision` (in any case) or else `basic`; prepare refuses other values.
    pub fn of(message_format: Option<&str>) -> Format {
        match message_format {
            Some(f) if f.eq_ignore_ascii_case("openai-vision") => Format::OpenaiVision,
            _ => Format::Basic,
        }
    }
}

/// Where an image dict's value points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Path,
    Base64,
    Url,
}

/// The mime type and resource of a one-key image dict
/// (`^data:image/(.*);(path|base64|url)$`), and its value.
pub fn image_dict(map: &Map<String, Json>) -> Option<(&str, Resource, &Json)> {
    if map.len() != 1 {
        return None;
    }
    let (key, value) = map.iter().next()?;
    let rest = key.strip_prefix("data:")?;
    let (mime, resource) = rest.rsplit_once(';')?;
    mime.strip_prefix("image/")?;
    let resource = match resource {
        "path" => Resource::Path,
        "base64" => Resource::Base64,
        "url" => Resource::Url,
        _ => return None,
    };
    Some((mime, resource, value))
}

/// An image reference in either format: the mime type when the reference
/// names one, where it points, and the text it points with (for `base64`, the
/// data as written, a `data:` URL in openai-vision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reference<'a> {
    pub mime: Option<&'a str>,
    pub resource: Resource,
    pub value: &'a Json,
}

/// `map` as an image reference of `format`
/// (OpenaiVisionMultimediaProcessor.is_multimedia_dict: two keys, `type` and
/// the dict it names, `image_url` with a `url` or `image_file` with a `path`).
pub fn reference(map: &Map<String, Json>, format: Format) -> Option<Reference<'_>> {
    if format == Format::Basic {
        let (mime, resource, value) = image_dict(map)?;
        return Some(Reference { mime: Some(mime), resource, value });
    }
    let kind = map.get("type")?.as_str()?;
    let inner = map.get(kind)?.as_object().filter(|_| map.len() == 2)?;
    match kind {
        "image_file" => Some(Reference { mime: None, resource: Resource::Path, value: inner.get("path")? }),
        "image_url" => {
            let value = inner.get("url")?;
            let mime = value.as_str().and_then(data_url_mime);
            let resource = if mime.is_some() { Resource::Base64 } else { Resource::Url };
            Some(Reference { mime, resource, value })
        }
        _ => None,
    }
}

/// The mime type of a `data:image/<ext>;base64,<data>` URL (the prefix
/// ImageProcessor.is_base64 accepts).
fn data_url_mime(url: &str) -> Option<&str> {
    let (prefix, _) = url.split_once(',')?;
    let mime = prefix.strip_prefix("data:")?.strip_suffix(";base64")?;
    mime.starts_with("image/").then_some(mime)
}

/// Applies `f` to every image reference in `value` (lists and dicts walked as
/// `_process_multimedia_dict_recursively` walks them); `f` returns the
/// replacement, or `None` to keep the reference.
fn map_images<E>(
    value: &Json,
    format: Format,
    f: &mut impl FnMut(Reference<'_>) -> Result<Option<Json>, E>,
) -> Result<Json, E> {
    match value {
        Json::Array(items) => {
            Ok(Json::Array(items.iter().map(|v| map_images(v, format, f)).collect::<Result<_, E>>()?))
        }
        Json::Object(map) => {
            if let Some(found) = reference(map, format) {
                return Ok(f(found)?.unwrap_or_else(|| value.clone()));
            }
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.clone(), map_images(v, format, f)?);
            }
            Ok(Json::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// A file reference (`_generate_image_file_reference`); `mime` names the
/// basic format's key.
fn path_reference(format: Format, mime: Option<&str>, path: String) -> Json {
    match format {
        Format::Basic => {
            let mut map = Map::new();
            map.insert(format!("data:{};path", mime.unwrap_or("image/*")), Json::String(path));
            Json::Object(map)
        }
        Format::OpenaiVision => serde_json::json!({"type": "image_file", "image_file": {"path": path}}),
    }
}

/// Relative path references made absolute against `dir` (a data file's or a
/// base run's folder).
pub fn resolve_paths(value: &Json, dir: &Path, format: Format) -> Json {
    let resolved: Result<Json, std::convert::Infallible> = map_images(value, format, &mut |found| {
        Ok(match (found.resource, found.value.as_str()) {
            (Resource::Path, Some(p)) if Path::new(p).is_relative() => {
                Some(path_reference(format, found.mime, dir.join(p).to_string_lossy().into_owned()))
            }
            _ => None,
        })
    });
    resolved.unwrap_or_else(|never| match never {})
}

/// Path references under `dir` written relative to it (`output.jsonl` names
/// its images relative to its own folder, as promptflow's does).
pub fn relative_paths(value: &Json, dir: &Path, format: Format) -> Json {
    let relative: Result<Json, std::convert::Infallible> = map_images(value, format, &mut |found| {
        Ok(match (found.resource, found.value.as_str().map(Path::new)) {
            (Resource::Path, Some(p)) => p
                .strip_prefix(dir)
                .ok()
                .map(|rel| path_reference(format, found.mime, rel.to_string_lossy().replace('\\', "/"))),
            _ => None,
        })
    });
    relative.unwrap_or_else(|never| match never {})
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("an image's base64 data is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

/// Every base64 image in `value` written to `dir` as `<uuid>.<ext>` and
/// replaced by its file reference with the file's absolute path
/// (`_save_image_to_file`: the extension is the mime subtype, none for `*`).
pub fn persist(value: &Json, dir: &Path, format: Format) -> Result<Json, PersistError> {
    map_images(value, format, &mut |found| {
        let (Resource::Base64, Some(data), Some(mime)) = (found.resource, found.value.as_str(), found.mime) else {
            return Ok(None);
        };
        // `create_image_from_base64` takes what follows the last comma.
        let data = data.rsplit(',').next().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD.decode(data)?;
        let ext = mime.rsplit('/').next().filter(|e| *e != "*");
        let id = uuid::Uuid::new_v4();
        let name = ext.map_or_else(|| id.to_string(), |e| format!("{id}.{e}"));
        std::fs::create_dir_all(dir).map_err(|source| PersistError::Io { path: dir.to_path_buf(), source })?;
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| PersistError::Io { path: path.clone(), source })?;
        Ok(Some(path_reference(format, Some(mime), path.to_string_lossy().into_owned())))
    })
}

/// True when `value` holds an image reference of `format` anywhere.
pub fn has_images(value: &Json, format: Format) -> bool {
    match value {
        Json::Array(items) => items.iter().any(|v| has_images(v, format)),
        Json::Object(map) => reference(map, format).is_some() || map.values().any(|v| has_images(v, format)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_dicts_are_one_key_data_image_dicts() {
        let map = |v: Json| v.as_object().unwrap().clone();
        let png = map(json!({"data:image/png;path": "a.png"}));
        assert_eq!(image_dict(&png).map(|(m, r, _)| (m, r)), Some(("image/png", Resource::Path)));
        let any = map(json!({"data:image/*;base64": "AA=="}));
        assert_eq!(image_dict(&any).map(|(m, r, _)| (m, r)), Some(("image/*", Resource::Base64)));
        for not in [
            json!({"data:image/png;file": "a"}),
            json!({"data:text/plain;path": "a"}),
            json!({"data:image/png;path": "a", "x": 1}),
            json!({"image/png;path": "a"}),
        ] {
            assert_eq!(image_dict(&map(not.clone())), None, "{not}");
        }
    }

    #[test]
    fn base64_images_become_files_and_paths_move_between_absolute_and_relative() {
        let dir = tempfile::tempdir().unwrap();
        let value = json!({"a": [{"data:image/png;base64": "aGk="}, {"data:image/*;base64": "data:image/*;base64,aGk="}], "n": 1, "u": {"data:image/png;url": "http://x"}});
        let persisted = persist(&value, dir.path(), Format::Basic).unwrap();
        let first = persisted["a"][0]["data:image/png;path"].as_str().unwrap();
        assert!(first.ends_with(".png") && Path::new(first).is_absolute(), "{first}");
        assert_eq!(std::fs::read(first).unwrap(), b"hi");
        let second = persisted["a"][1]["data:image/*;path"].as_str().unwrap();
        assert!(Path::new(second).extension().is_none(), "no extension for image/*: {second}");
        assert_eq!(std::fs::read(second).unwrap(), b"hi");
        assert_eq!(persisted["u"], value["u"]);
        assert_eq!(persisted["n"], 1);
        let relative = relative_paths(&persisted, dir.path(), Format::Basic);
        let name = relative["a"][0]["data:image/png;path"].as_str().unwrap();
        assert_eq!(dir.path().join(name).to_string_lossy(), first);
        assert_eq!(resolve_paths(&relative, dir.path(), Format::Basic), persisted);
        assert!(has_images(&relative, Format::Basic) && !has_images(&json!({"a": [1, "x"]}), Format::Basic));
        assert!(matches!(
            persist(&json!({"data:image/png;base64": "%%"}), dir.path(), Format::Basic),
            Err(PersistError::Base64(_))
        ));
    }

    #[test]
    fn openai_vision_references_are_image_file_and_image_url_parts() {
        let vision = Format::of(Some("OpenAI-Vision"));
        assert_eq!(vision, Format::OpenaiVision);
        assert_eq!(Format::of(Some("basic")), Format::Basic);
        let map = |v: Json| v.as_object().unwrap().clone();
        let file = map(json!({"type": "image_file", "image_file": {"path": "a.png"}}));
        assert_eq!(reference(&file, vision).map(|r| (r.mime, r.resource)), Some((None, Resource::Path)));
        assert_eq!(reference(&file, Format::Basic), None, "a content part is no image in the basic format");
        let data = map(json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}}));
        assert_eq!(reference(&data, vision).map(|r| (r.mime, r.resource)), Some((Some("image/png"), Resource::Base64)));
        let url = map(json!({"type": "image_url", "image_url": {"url": "https://x/a.png"}}));
        assert_eq!(reference(&url, vision).map(|r| (r.mime, r.resource)), Some((None, Resource::Url)));
        for not in [
            json!({"type": "image_file", "image_file": {"url": "a"}}),
            json!({"type": "image_url", "image_url": "https://x"}),
            json!({"type": "image_file", "image_file": {"path": "a"}, "x": 1}),
            json!({"type": "text", "text": "hi"}),
            json!({"data:image/png;path": "a.png"}),
        ] {
            assert_eq!(reference(&map(not.clone()), vision), None, "{not}");
        }
        let dir = tempfile::tempdir().unwrap();
        let persisted = persist(&json!([data, url, "text"]), dir.path(), vision).unwrap();
        let path = persisted[0]["image_file"]["path"].as_str().unwrap();
        assert!(path.ends_with(".png") && Path::new(path).is_absolute(), "{path}");
        assert_eq!(std::fs::read(path).unwrap(), b"hi");
        assert_eq!((&persisted[1], &persisted[2]), (&json!(url), &json!("text")));
        let relative = relative_paths(&persisted, dir.path(), vision);
        assert!(Path::new(relative[0]["image_file"]["path"].as_str().unwrap()).is_relative());
        assert_eq!(resolve_paths(&relative, dir.path(), vision), persisted);
        assert!(has_images(&relative, vision) && !has_images(&relative, Format::Basic));
    }
}
