//! promptflow-tools' gpt-4v chat tools, `aoai_gpt4v.AzureOpenAI.chat` and
//! `openai_gpt4v.OpenAI.chat` (`custom_llm` nodes): images in the node's
//! inputs render as `Image(<sha1[:8]>)` (promptflow's `str(Image)`), a
//! `![image]({{x}})` in the template is put on a line of its own, and a
//! message line that is an image's text is sent as an `image_url` content
//! part (promptflow-tools 1.6 common.py: preprocess_template_string,
//! find_referenced_image_set, to_content_str_or_list).

use std::path::Path;

use base64::Engine as _;
use serde_json::{Map, Value as Json, json};

use crate::images::{Format, Resource, reference};

/// Images found in a node's inputs: each image's text (`Image(<hash>)`) and
/// the URL sent for it (a `data:` URL of its bytes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Images(Vec<(String, String)>);

/// A call of a vision tool, and where its images come from: the flow's
/// format, the inputs bound to flow inputs of type image (loaded from a path,
/// base64 text or dict) and the folder relative paths start from.
#[derive(Clone, Debug)]
pub struct Vision<'a> {
    pub format: Format,
    pub image_inputs: Vec<String>,
    pub working_dir: &'a Path,
}

/// `preprocess_template_string`: `![image]({{x}})` becomes `\n{{x}}\n`.
pub fn preprocess_template(template: &str) -> String {
    IMAGE_MARK.replace_all(template, "\n{{${2}}}\n").into_owned()
}

static IMAGE_MARK: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"!\[(\s*image\s*)\]\(\{\{(\s*[^\s{}]+\s*)\}\}\)")
        .unwrap_or_else(|_| regex::Regex::new(r"[^\s\S]").unwrap_or_else(|_| unreachable!()))
});

/// Every image in `vars` replaced by its text, and the images collected
/// (find_referenced_image_set walks lists and dicts).
pub fn take_images(vars: &mut Map<String, Json>, source: &Vision<'_>) -> Result<Images, String> {
    let mut images = Images::default();
    for (name, value) in vars.iter_mut() {
        if source.image_inputs.contains(name) {
            let (bytes, mime) = load_input(value, source)?;
            *value = Json::String(images.add(&bytes, &mime));
        } else {
            replace(value, source, &mut images)?;
        }
    }
    Ok(images)
}

impl Images {
    fn add(&mut self, bytes: &[u8], mime: &str) -> String {
        let text = format!("Image({})", &sha1_hex(bytes)[..8]);
        let url = format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes));
        if !self.0.iter().any(|(t, _)| *t == text) {
            self.0.push((text.clone(), url));
        }
        text
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `to_content_str_or_list` on every message's content: its lines that are
    /// an image's text become `image_url` parts, the others text parts (blank
    /// lines dropped), when the content holds an image. `detail` is always
    /// `auto`: the tools pass `detail=` where build_messages reads
    /// `image_detail`, so the node's `detail` is never sent.
    pub fn to_content_parts(&self, messages: &mut [Map<String, Json>]) {
        for message in messages {
            let Some(Json::String(content)) = message.get("content") else { continue };
            let lines: Vec<&str> = content.trim().split('\n').collect();
            let url = |line: &str| self.0.iter().find(|(t, _)| t == line.trim()).map(|(_, u)| u.clone());
            if !lines.iter().any(|l| url(l).is_some()) {
                continue;
            }
            let parts: Vec<Json> = lines
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| match url(l) {
                    Some(url) => json!({"type": "image_url", "image_url": {"url": url, "detail": "auto"}}),
                    None => json!({"type": "text", "text": l}),
                })
                .collect();
            message.insert("content".into(), Json::Array(parts));
        }
    }
}

fn replace(value: &mut Json, source: &Vision<'_>, images: &mut Images) -> Result<(), String> {
    match value {
        Json::Array(items) => items.iter_mut().try_for_each(|v| replace(v, source, images)),
        Json::Object(map) => {
            if reference(map, source.format).is_some() {
                let (bytes, mime) = load_reference(map, source)?;
                *value = Json::String(images.add(&bytes, &mime));
                return Ok(());
            }
            map.values_mut().try_for_each(|v| replace(v, source, images))
        }
        _ => Ok(()),
    }
}

/// A flow input of type image, as MultimediaProcessor.create_image reads it:
/// base64 text, else a URL, else a path; or an image dict of the flow's format.
fn load_input(value: &Json, source: &Vision<'_>) -> Result<(Vec<u8>, String), String> {
    match value {
        Json::Object(map) if reference(map, source.format).is_some() => load_reference(map, source),
        Json::String(text) if !text.is_empty() => {
            if let Some(bytes) = base64_bytes(text) {
                let mime = guess_mime(&bytes).to_string();
                return Ok((bytes, mime));
            }
            if text.contains("://") {
                return Err(url_refused(text));
            }
            let bytes = read(source.working_dir, text)?;
            let mime = guess_mime(&bytes).to_string();
            Ok((bytes, mime))
        }
        other => Err(format!("Unsupported image input {other}. The image inputs should be a string or a dictionary.")),
    }
}

/// An image reference's bytes and mime type (the reference's, or guessed
/// from the bytes when it names none, as promptflow's Image does).
fn load_reference(map: &Map<String, Json>, source: &Vision<'_>) -> Result<(Vec<u8>, String), String> {
    let Some(found) = reference(map, source.format) else { return Err("not an image".into()) };
    let text = found.value.as_str().unwrap_or_default();
    let bytes = match found.resource {
        Resource::Url => return Err(url_refused(text)),
        Resource::Path => read(source.working_dir, text)?,
        Resource::Base64 => base64_bytes(text.rsplit(',').next().unwrap_or_default())
            .ok_or_else(|| format!("Invalid base64 image: {text}."))?,
    };
    let mime = found.mime.map_or_else(|| guess_mime(&bytes).to_string(), str::to_string);
    Ok((bytes, mime))
}

fn url_refused(url: &str) -> String {
    format!(
        "the image at {url} is given by URL: images by URL in vision tools' inputs are not supported yet; give its file or bytes"
    )
}

fn read(dir: &Path, path: &str) -> Result<Vec<u8>, String> {
    let full = dir.join(path);
    std::fs::read(&full).map_err(|e| format!("{}: {e}", full.display()))
}

/// ImageProcessor.is_base64's alphabet, then the bytes (a `data:` prefix is
/// the caller's to strip).
fn base64_bytes(text: &str) -> Option<Vec<u8>> {
    let body = text.split_once(',').filter(|(p, _)| p.starts_with("data:image/")).map_or(text, |(_, b)| b);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// The mime type promptflow's Image guesses from the bytes (the `filetype`
/// package's image matchers for the common formats), else `image/*`.
pub fn guess_mime(bytes: &[u8]) -> &'static str {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if starts(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        "image/png"
    } else if starts(b"GIF8") {
        "image/gif"
    } else if bytes.len() > 11 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        "image/webp"
    } else if starts(b"BM") {
        "image/bmp"
    } else if starts(&[0x49, 0x49, 0x2A, 0x00]) || starts(&[0x4D, 0x4D, 0x00, 0x2A]) {
        "image/tiff"
    } else if starts(&[0x00, 0x00, 0x01, 0x00]) {
        "image/x-icon"
    } else {
        "image/*"
    }
}

/// SHA-1 in hex (FIPS 180-4): promptflow names an image by the first 8
/// hex digits of its bytes' SHA-1 (PFBytes._hash).
pub fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_the_standard_vectors() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(sha1_hex(long), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    }

    #[test]
    fn image_marks_move_to_their_own_line_and_image_lines_become_parts() {
        let template = "# user:\n{{question}}\n![image]({{ test_image }})";
        assert_eq!(preprocess_template(template), "# user:\n{{question}}\n\n{{ test_image }}\n");
        let mut vars = Map::new();
        vars.insert("question".into(), json!("What is it?"));
        vars.insert("pics".into(), json!([{"data:image/png;base64": "aGk="}]));
        let dir = tempfile::tempdir().unwrap();
        let source = Vision { format: Format::Basic, image_inputs: vec![], working_dir: dir.path() };
        let images = take_images(&mut vars, &source).unwrap();
        let text = format!("Image({})", &sha1_hex(b"hi")[..8]);
        assert_eq!(vars["pics"], json!([text.clone()]));
        let mut messages = vec![
            json!({"role": "user", "content": format!("What is it?\n\n  {text}")}).as_object().unwrap().clone(),
            json!({"role": "system", "content": "no image"}).as_object().unwrap().clone(),
        ];
        images.to_content_parts(&mut messages);
        assert_eq!(
            messages[0]["content"],
            json!([{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk=", "detail": "auto"}}])
        );
        assert_eq!(messages[1]["content"], "no image");
    }

    #[test]
    fn flow_image_inputs_load_from_files_and_guess_their_type() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 1]).unwrap();
        let mut vars = Map::new();
        vars.insert("img".into(), json!("a.png"));
        vars.insert("web".into(), json!({"type": "image_url", "image_url": {"url": "https://x/a.png"}}));
        let inputs = vec!["img".to_string()];
        let source = Vision { format: Format::OpenaiVision, image_inputs: inputs, working_dir: dir.path() };
        let err = take_images(&mut vars.clone(), &source).unwrap_err();
        assert!(err.contains("by URL"), "{err}");
        vars.remove("web");
        let images = take_images(&mut vars, &source).unwrap();
        assert!(images.0[0].1.starts_with("data:image/png;base64,"), "{images:?}");
        assert_eq!(guess_mime(b"GIF89a"), "image/gif");
        assert_eq!(guess_mime(b"????"), "image/*");
    }
}
