//! Images as promptflow writes them in JSON: a one-key dict
//! `{"data:image/<ext>;path|base64|url": value}` (promptflow-core
//! `_utils/multimedia_utils.py`, `MIME_PATTERN` and BasicMultimediaProcessor).
//!
//! Python workers hand an `Image` back as its base64 dict (mime type kept in
//! the key), so a line holds its images in memory and the next node gets the
//! same bytes. Where promptflow persists an image (a run's outputs and
//! details, `flow test`'s outputs) this module writes the bytes to a file
//! named by a UUID and puts the path dict in its place, as
//! `persist_multimedia_data` does; relative paths in data are resolved
//! against the data file's folder, as `resolve_multimedia_data_recursively`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value as Json};

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

/// Applies `f` to every image dict in `value` (lists and dicts walked as
/// `_process_multimedia_dict_recursively` walks them); `f` returns the
/// replacement, or `None` to keep the dict.
fn map_images<E>(
    value: &Json,
    f: &mut impl FnMut(&str, Resource, &Json) -> Result<Option<Json>, E>,
) -> Result<Json, E> {
    match value {
        Json::Array(items) => Ok(Json::Array(items.iter().map(|v| map_images(v, f)).collect::<Result<_, E>>()?)),
        Json::Object(map) => {
            if let Some((mime, resource, inner)) = image_dict(map) {
                return Ok(f(mime, resource, inner)?.unwrap_or_else(|| value.clone()));
            }
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.clone(), map_images(v, f)?);
            }
            Ok(Json::Object(out))
        }
        other => Ok(other.clone()),
    }
}

fn path_dict(mime: &str, path: String) -> Json {
    let mut map = Map::new();
    map.insert(format!("data:{mime};path"), Json::String(path));
    Json::Object(map)
}

/// Relative `;path` images made absolute against `dir` (a data file's or a
/// base run's folder).
pub fn resolve_paths(value: &Json, dir: &Path) -> Json {
    let resolved: Result<Json, std::convert::Infallible> = map_images(value, &mut |mime, resource, inner| {
        Ok(match (resource, inner.as_str()) {
            (Resource::Path, Some(p)) if Path::new(p).is_relative() => {
                Some(path_dict(mime, dir.join(p).to_string_lossy().into_owned()))
            }
            _ => None,
        })
    });
    resolved.unwrap_or_else(|never| match never {})
}

/// `;path` images under `dir` written relative to it (`output.jsonl` names
/// its images relative to its own folder, as promptflow's does).
pub fn relative_paths(value: &Json, dir: &Path) -> Json {
    let relative: Result<Json, std::convert::Infallible> = map_images(value, &mut |mime, resource, inner| {
        Ok(match (resource, inner.as_str().map(Path::new)) {
            (Resource::Path, Some(p)) => {
                p.strip_prefix(dir).ok().map(|rel| path_dict(mime, rel.to_string_lossy().replace('\\', "/")))
            }
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
/// replaced by its path dict with the file's absolute path
/// (`_save_image_to_file`: the extension is the mime subtype, none for `*`).
pub fn persist(value: &Json, dir: &Path) -> Result<Json, PersistError> {
    map_images(value, &mut |mime, resource, inner| {
        let (Resource::Base64, Some(data)) = (resource, inner.as_str()) else { return Ok(None) };
        // `create_image_from_base64` takes what follows the last comma.
        let data = data.rsplit(',').next().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD.decode(data)?;
        let ext = mime.rsplit('/').next().filter(|e| *e != "*");
        let id = uuid::Uuid::new_v4();
        let name = ext.map_or_else(|| id.to_string(), |e| format!("{id}.{e}"));
        std::fs::create_dir_all(dir).map_err(|source| PersistError::Io { path: dir.to_path_buf(), source })?;
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| PersistError::Io { path: path.clone(), source })?;
        Ok(Some(path_dict(mime, path.to_string_lossy().into_owned())))
    })
}

/// True when `value` holds an image dict anywhere.
pub fn has_images(value: &Json) -> bool {
    match value {
        Json::Array(items) => items.iter().any(has_images),
        Json::Object(map) => image_dict(map).is_some() || map.values().any(has_images),
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
        let persisted = persist(&value, dir.path()).unwrap();
        let first = persisted["a"][0]["data:image/png;path"].as_str().unwrap();
        assert!(first.ends_with(".png") && Path::new(first).is_absolute(), "{first}");
        assert_eq!(std::fs::read(first).unwrap(), b"hi");
        let second = persisted["a"][1]["data:image/*;path"].as_str().unwrap();
        assert!(Path::new(second).extension().is_none(), "no extension for image/*: {second}");
        assert_eq!(std::fs::read(second).unwrap(), b"hi");
        assert_eq!(persisted["u"], value["u"]);
        assert_eq!(persisted["n"], 1);
        let relative = relative_paths(&persisted, dir.path());
        let name = relative["a"][0]["data:image/png;path"].as_str().unwrap();
        assert_eq!(dir.path().join(name).to_string_lossy(), first);
        assert_eq!(resolve_paths(&relative, dir.path()), persisted);
        assert!(has_images(&relative) && !has_images(&json!({"a": [1, "x"]})));
        assert!(matches!(persist(&json!({"data:image/png;base64": "%%"}), dir.path()), Err(PersistError::Base64(_))));
    }
}
