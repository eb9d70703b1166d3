//! The `BulkRuns/submit` body, built from what a run file says, as
//! promptflow's `Run._to_rest_object` builds it, and the run id that makes a
//! retried CI job find its run instead of submitting it twice.

use serde_json::{Map, Value as Json, json};
use sha2::Digest;

use exec::job::Job;
use model::flow::run_file::EnvironmentVariables;

/// Where the flow and the data were uploaded, and what the run is over.
pub struct Uploads {
    pub datastore: String,
    /// `LocalUpload/{hash}/{flow folder}`.
    pub flow_prefix: String,
    /// `azureml://...` (uploaded or passed through), unless an evaluation reads only its base run.
    pub data_uri: Option<String>,
    /// The cloud id of the base run of an evaluation.
    pub base_run: Option<String>,
}

/// The commit and branch a run is for (its tags, and part of its id).
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    pub commit: Option<String>,
    pub branch: Option<String>,
}

/// The tag holding a run's [`run_id`]: it tells whether a run found under a
/// user's `--name` is this same run.
pub const CONTENT_TAG: &str = "flow-ci.content";

/// `{flow folder}_{16 hex}`: a digest of the flow snapshot, the data, the
/// base run, the run settings and the commit. A retried job computes the
/// same id and finds its run; any change gives a new one.
pub fn run_id(job: &Job, uploads: &Uploads, provenance: &Provenance) -> String {
    let mut hasher = sha2::Sha256::new();
    for part in [
        uploads.flow_prefix.as_str(),
        uploads.data_uri.as_deref().unwrap_or(""),
        uploads.base_run.as_deref().unwrap_or(""),
        job.variant.as_deref().unwrap_or(""),
        provenance.commit.as_deref().unwrap_or(""),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for (input, source) in &job.mapping {
        hasher.update(format!("{input}={source}\0").as_bytes());
    }
    if let Some(file) = &job.run_file {
        hasher.update(std::fs::read(&file.file).unwrap_or_default());
    }
    let digest = base16ct::lower::encode_string(&hasher.finalize());
    format!("{}_{}", folder_name(&job.flow), &digest[..16])
}

/// The flow folder's name with only the characters run ids allow.
pub fn folder_name(flow: &std::path::Path) -> String {
    let name = std::path::absolute(flow)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "flow".into());
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// The body of `POST {services}flow/api{WS}/BulkRuns/submit`.
pub fn body(job: &Job, id: &str, uploads: &Uploads, provenance: &Provenance, flow_path: &str) -> Json {
    let file = job.run_file.as_ref();
    let mut body = Map::new();
    let mut put = |k: &str, v: Json| {
        body.insert(k.into(), v);
    };
    put("flowDefinitionDataStoreName", json!(uploads.datastore));
    put("flowDefinitionBlobPath", json!(format!("{}/flow.dag.yaml", uploads.flow_prefix)));
    put("runId", json!(id));
    let display = file.and_then(|f| f.display_name.as_ref()).map_or(id, |d| d.value.as_str());
    put("runDisplayName", json!(display));
    put("runDisplayNameGenerationType", json!("UserProvidedMacro"));
    if let Some(d) = file.and_then(|f| f.description.as_ref()) {
        put("description", json!(d.value));
    }
    put("tags", Json::Object(tags(job, provenance, flow_path)));
    let properties: Map<String, Json> =
        file.iter().flat_map(|f| &f.properties).map(|(k, v)| (k.value.clone(), json!(v.value))).collect();
    if !properties.is_empty() {
        put("properties", Json::Object(properties));
    }
    put("runExperimentName", json!(folder_name(&job.flow)));
    if let Some(uri) = &uploads.data_uri {
        put("batchDataInput", json!({ "dataUri": uri }));
    }
    let mapping: Map<String, Json> = job.mapping.iter().map(|(k, v)| (k.clone(), json!(mapping_text(v)))).collect();
    put("inputsMapping", Json::Object(mapping));
    if let Some(base) = &uploads.base_run {
        put("variantRunId", json!(base));
    }
    if let Some(variant) = &job.variant {
        put("nodeVariant", json!(variant));
    }
    put("connections", Json::Object(connections(job)));
    put("environmentVariables", Json::Object(environment(job)));
    put("sessionSetupMode", json!("SystemWait"));
    put("flowLineageId", json!(lineage_id(flow_path)));
    compute(job, &mut body);
    Json::Object(body)
}

/// promptflow sends non-string mapping values JSON-encoded.
fn mapping_text(source: &model::flow::reference::MappingSource) -> String {
    match source.to_json() {
        Json::String(s) => s,
        other => other.to_string(),
    }
}

/// The run file's tags plus where the run came from.
fn tags(job: &Job, provenance: &Provenance, flow_path: &str) -> Map<String, Json> {
    let mut tags: Map<String, Json> =
        job.run_file.iter().flat_map(|f| &f.tags).map(|(k, v)| (k.value.clone(), json!(v.value))).collect();
    tags.insert("flow-ci.flow".into(), json!(flow_path));
    if let Some(commit) = &provenance.commit {
        tags.insert("flow-ci.commit".into(), json!(commit));
    }
    if let Some(branch) = &provenance.branch {
        tags.insert("flow-ci.branch".into(), json!(branch));
    }
    tags
}

/// `connections: {node: {connection: aoai, deployment_name: gpt-4o}}`.
fn connections(job: &Job) -> Map<String, Json> {
    job.run_file
        .iter()
        .flat_map(|f| &f.connections)
        .map(|(node, settings)| {
            let settings: Map<String, Json> = settings.iter().map(|(k, v)| (k.value.clone(), json!(v.value))).collect();
            (node.value.clone(), Json::Object(settings))
        })
        .collect()
}

fn environment(job: &Job) -> Map<String, Json> {
    match job.run_file.as_ref().map(|f| &f.environment_variables) {
        Some(EnvironmentVariables::Map(vars)) => vars.iter().map(|(k, v)| (k.value.clone(), json!(v.value))).collect(),
        _ => Map::new(),
    }
}

/// The run's runtime: the run file's `runtime:`, else `automatic`, always
/// sent (promptflow-azure's `RunOperations._resolve_runtime` does, with a
/// compute too); `resources.compute` names a compute instance session,
/// `resources.instance_type` sizes the serverless one.
fn compute(job: &Job, body: &mut Map<String, Json>) {
    let file = job.run_file.as_ref();
    let runtime = file.and_then(|f| f.runtime.as_ref()).map_or("automatic", |r| r.value.as_str());
    body.insert("runtimeName".into(), json!(runtime));
    let resources = file.map(|f| &f.resources);
    if let Some(compute) = resources.and_then(|r| r.compute.as_ref()) {
        body.insert("computeName".into(), json!(compute.value));
    } else if let Some(size) = resources.and_then(|r| r.instance_type.as_ref()) {
        body.insert("vmSize".into(), json!(size.value));
    }
}

/// A stable 64-hex id of the flow within its repository (promptflow hashes
/// the repository-relative folder).
fn lineage_id(flow_path: &str) -> String {
    base16ct::lower::encode_string(&sha2::Sha256::digest(flow_path.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::flow::reference::MappingSource;

    fn job() -> Job {
        Job {
            name: "n".into(),
            flow: "fixtures/flows/web-classification".into(),
            data: None,
            base: None,
            mapping: vec![
                ("url".into(), MappingSource::parse(&json!("${data.url}"))),
                ("k".into(), MappingSource::parse(&json!(3))),
            ],
            variant: Some("${summarize.variant_1}".into()),
            run_file: None,
            port: None,
        }
    }

    fn uploads() -> Uploads {
        Uploads {
            datastore: "workspaceblobstore".into(),
            flow_prefix: "LocalUpload/abc/web-classification".into(),
            data_uri: Some("azureml://datastores/workspaceblobstore/paths/LocalUpload/def/data.jsonl".into()),
            base_run: Some("base_1".into()),
        }
    }

    #[test]
    fn the_body_says_what_the_run_is() {
        let provenance = Provenance { commit: Some("c0ffee".into()), branch: Some("feature".into()) };
        let body = body(&job(), "web-classification_1", &uploads(), &provenance, "flows/web-classification");
        assert_eq!(body["flowDefinitionBlobPath"], "LocalUpload/abc/web-classification/flow.dag.yaml");
        assert_eq!(body["inputsMapping"], json!({"url": "${data.url}", "k": "3"}));
        assert_eq!(body["variantRunId"], "base_1");
        assert_eq!(body["nodeVariant"], "${summarize.variant_1}");
        assert_eq!(body["runtimeName"], "automatic");
        assert_eq!(body["tags"]["flow-ci.commit"], "c0ffee");
        assert_eq!(body["tags"]["flow-ci.flow"], "flows/web-classification");
        assert_eq!(body["flowLineageId"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn the_runtime_is_always_named_even_on_a_compute() {
        let decode = |text: &str| {
            let root = model::yaml::parse(text).unwrap().unwrap();
            let mut diags = model::diag::Diagnostics::default();
            model::flow::run_file::decode(std::path::Path::new("run.yml"), &root, &mut diags)
        };
        let provenance = Provenance::default();
        let with = |file: &str| {
            let job = Job { run_file: decode(file), ..job() };
            body(&job, "id", &uploads(), &provenance, "flows/x")
        };
        let compute = with("flow: .\ndata: d.jsonl\nresources:\n  compute: ci-1\n");
        assert_eq!(
            (compute["computeName"].as_str(), compute["runtimeName"].as_str()),
            (Some("ci-1"), Some("automatic"))
        );
        let runtime = with("flow: .\ndata: d.jsonl\nruntime: my-runtime\n");
        assert_eq!(runtime["runtimeName"], "my-runtime");
    }

    #[test]
    fn ids_are_stable_and_change_with_the_commit() {
        let a = Provenance { commit: Some("a".into()), branch: None };
        let b = Provenance { commit: Some("b".into()), branch: None };
        let id = run_id(&job(), &uploads(), &a);
        assert!(id.starts_with("web-classification_") && id.len() == "web-classification_".len() + 16, "{id}");
        assert_eq!(id, run_id(&job(), &uploads(), &a));
        assert_ne!(id, run_id(&job(), &uploads(), &b));
    }
}
