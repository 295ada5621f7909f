//! The OpenCode configuration Canopy writes for a sandbox: one provider
//! (the scripted model offline, or a real one when a key is set), the
//! permissions an unattended agent needs, and everything that would reach
//! the network or block on a person switched off.

use serde_json::{Value, json};

/// Which model the sandbox's OpenCode talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// Provider key in the config (`canopy` for the scripted model).
    pub provider: String,
    /// Model key.
    pub model: String,
    /// OpenAI-compatible base URL (`http://…/v1`).
    pub base_url: String,
    /// API key to send (the scripted model ignores it).
    pub api_key: String,
}

impl ModelConfig {
    /// The scripted, offline model at `base_url`.
    pub fn scripted(base_url: &str) -> Self {
        ModelConfig {
            provider: "canopy".into(),
            model: crate::devmodel::MODEL_ID.into(),
            base_url: base_url.to_owned(),
            api_key: "offline".into(),
        }
    }
}

/// The `OPENCODE_CONFIG_CONTENT` for a sandbox.
///
/// There is deliberately no `"$schema"` key: OpenCode 1.18.33 tries to
/// fetch it, and without network its routes then hang.
pub fn opencode_config(model: &ModelConfig) -> Value {
    let full = format!("{}/{}", model.provider, model.model);
    json!({
        "autoupdate": false,
        "share": "disabled",
        "model": full,
        "small_model": full,
        "enabled_providers": [model.provider],
        "provider": { model.provider.clone(): {
            "npm": "@ai-sdk/openai-compatible",
            "name": model.provider,
            "options": { "baseURL": model.base_url, "apiKey": model.api_key },
            "models": { model.model.clone(): {
                "name": model.model, "tool_call": true,
                "limit": { "context": 200000, "output": 8192 }
            }}
        }},
        // Edits and commands are the agent's job inside its sandbox; nobody
        // is there to answer a question, and the web is out of bounds.
        "permission": {
            "edit": "allow", "bash": "allow", "question": "deny",
            "webfetch": "deny", "websearch": "deny", "external_directory": "deny"
        },
        "lsp": false,
        "formatter": false,
        "snapshot": false
    })
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
}
