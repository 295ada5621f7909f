//! The OpenCode configuration Canopy writes for a sandbox: one provider
//! (the scripted model offline, or a real one when a key is set), the
//! permissions an unattended agent needs, and everything that would reach
//! the network or block on a person switched off.

use serde_json::{Value, json};

/// Which model the sandbox's OpenCode talks to.
#[derive(Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// Provider key in the config (`canopy` for the scripted model,
    /// `anthropic`, `openai` for OpenCode's built-in providers).
    pub provider: String,
    /// Model key.
    pub model: String,
    /// OpenAI-compatible base URL (`http://…/v1`) of a provider Canopy
    /// declares; `None` for a provider built into OpenCode.
    pub base_url: Option<String>,
    /// Environment for the sandbox's OpenCode (the provider's API key). Kept
    /// out of the config text, documents and logs.
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelConfig")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

/// The model a real provider's key selects when no model is named.
pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-sonnet-4-5";
/// The model an OpenAI key selects when no model is named.
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4.1";

impl ModelConfig {
    /// The scripted, offline model at `base_url`.
    pub fn scripted(base_url: &str) -> Self {
        ModelConfig {
            provider: "canopy".into(),
            model: crate::devmodel::MODEL_ID.into(),
            base_url: Some(base_url.to_owned()),
            env: vec![],
        }
    }

    /// A provider built into OpenCode (`anthropic`, `openai`), whose key
    /// OpenCode reads from `key_var`.
    pub fn builtin(provider: &str, model: &str, key_var: &str, key: &str) -> Self {
        ModelConfig {
            provider: provider.to_owned(),
            model: model.to_owned(),
            base_url: None,
            env: vec![(key_var.to_owned(), key.to_owned())],
        }
    }

    /// Whether this is Canopy's scripted model.
    pub fn is_scripted(&self) -> bool {
        self.provider == "canopy"
    }

    /// `provider/model`, as OpenCode names it.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }

    /// For logs and the UI.
    pub fn label(&self) -> String {
        if self.is_scripted() {
            "offline scripted model (no API key set; answers from the prompt's script)".into()
        } else {
            self.full_name()
        }
    }
}

/// The `OPENCODE_CONFIG_CONTENT` for a sandbox.
///
/// There is deliberately no `"$schema"` key: OpenCode 1.18.33 tries to
/// fetch it, and without network its routes then hang.
pub fn opencode_config(model: &ModelConfig) -> Value {
    let full = model.full_name();
    let mut config = json!({
        "autoupdate": false,
        "share": "disabled",
        "model": full,
        "small_model": full,
        "enabled_providers": [model.provider],
        // Edits and commands are the agent's job inside its sandbox; nobody
        // is there to answer a question, and the web is out of bounds.
        "permission": {
            "edit": "allow", "bash": "allow", "question": "deny",
            "webfetch": "deny", "websearch": "deny", "external_directory": "deny"
        },
        "lsp": false,
        "formatter": false,
        "snapshot": false
    });
    if let Some(base_url) = &model.base_url {
        config["provider"] = json!({ model.provider.clone(): {
            "npm": "@ai-sdk/openai-compatible",
            "name": model.provider,
            "options": { "baseURL": base_url, "apiKey": "offline" },
            "models": { model.model.clone(): {
                "name": model.model, "tool_call": true,
                "limit": { "context": 200000, "output": 8192 }
            }}
        }});
    }
    config
}

/// Environment for `opencode serve` that keeps it from reaching out.
pub const QUIET_ENV: [(&str, &str); 6] = [
    ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
    ("OPENCODE_DISABLE_SHARE", "1"),
    ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
    ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1"),
    ("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1"),
    ("OPENCODE_DISABLE_PROJECT_CONFIG", "1"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_one_provider_and_no_schema() {
        let c = opencode_config(&ModelConfig::scripted("http://127.0.0.1:9/v1"));
        assert!(c.get("$schema").is_none());
        assert_eq!(c["model"], "canopy/canopy-scripted");
        assert_eq!(
            c["provider"]["canopy"]["options"]["baseURL"],
            "http://127.0.0.1:9/v1"
        );
        assert_eq!(c["permission"]["question"], "deny");
    }

    #[test]
    fn a_builtin_provider_keeps_its_key_out_of_the_config() {
        let m = ModelConfig::builtin("anthropic", "claude-x", "ANTHROPIC_API_KEY", "sk-secret");
        let c = opencode_config(&m).to_string();
        assert!(!c.contains("sk-secret"), "{c}");
        assert!(c.contains("anthropic/claude-x"), "{c}");
        assert!(!format!("{m:?}").contains("sk-secret"));
        assert_eq!(
            m.env,
            vec![("ANTHROPIC_API_KEY".into(), "sk-secret".into())]
        );
    }
}
