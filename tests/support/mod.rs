pub mod azurite;
pub mod fake_ado;
pub mod fake_aml;
pub mod fake_github;
pub mod fake_llm;
pub mod fs;
pub mod http;
pub mod repo;
