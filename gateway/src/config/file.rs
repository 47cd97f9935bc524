//! A TOML file of settings, read as defaults under the variables and flags.

use anyhow::Context as _;

use super::Standalone;

/// The settings of a TOML configuration file, checked: each key must be a setting (as
/// `gateway config` names it) and each value one that setting accepts. The error names the
/// file and the key. Values `gateway config` prints for unset settings (`<unset…>`) are
/// skipped, so its output is a valid file; a `<redacted>` secret is refused.
pub fn read_file(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    use clap::CommandFactory as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let command = Standalone::command();
    let mut settings = Vec::new();
    for (key, value) in table {
        let where_ = || format!("{}: `{key}`", path.display());
        let Some(arg) = command
            .get_arguments()
            .find(|arg| arg.get_id().as_str() == key)
        else {
            anyhow::bail!("{}: no such setting (see `gateway config`)", where_());
        };
        let value = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            // A list of strings, as the variable takes it: comma-separated.
            toml::Value::Array(items) => {
                let mut texts = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        toml::Value::String(text) => texts.push(text),
                        other => anyhow::bail!(
                            "{}: expected a list of strings, found a {} in it",
                            where_(),
                            other.type_str()
                        ),
                    }
                }
                texts.join(",")
            }
            other => anyhow::bail!(
                "{}: expected a string, number or boolean, found {}",
                where_(),
                other.type_str()
            ),
        };
        if value.starts_with("<unset") {
            continue;
        }
        if value == "<redacted>" {
            anyhow::bail!(
                "{}: the value is `<redacted>`: write the secret itself, or set it in the environment",
                where_()
            );
        }
        // The value alone, through the same parser the flag uses.
        let long = arg.get_long().expect("every setting has a flag");
        if let Err(error) = Standalone::command()
            .try_get_matches_from(["gateway".to_owned(), format!("--{long}={value}")])
        {
            let reason = error.to_string();
            let reason = reason
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            anyhow::bail!("{}: {reason}", where_());
        }
        settings.push((key, value));
    }
    Ok(settings)
}
