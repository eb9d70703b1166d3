//! The command-line side of `--backend azureml`: flags shared by `run
//! create` and `check`, and how Azure ML errors are shown.

use std::io::Write;
use std::time::Duration;

use backend::azureml::AzureMlError;

#[derive(Debug, Clone, clap::Args)]
pub struct CloudArgs {
    /// Azure ML: cancel runs still going after this long (exit 3): 90s, 45m, 2h; a bare number is minutes
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// `90s`, `45m`, `2h`, or minutes.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "m"),
    };
    let seconds_per = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{text}`: use s, m or h (e.g. 90s, 45m, 2h)")),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("`{text}` is not a duration (e.g. 90s, 45m, 2h)"))?;
    if !(value > 0.0 && value.is_finite()) {
        return Err(format!("`{text}`: the timeout must be more than zero"));
    }
    Ok(Duration::from_secs_f64(value * seconds_per))
}

/// Prints an Azure ML error with its hint; returns the exit code.
pub fn report(e: &AzureMlError, err: &mut dyn Write) -> u8 {
    let _ = writeln!(err, "error: {e}");
    if let Some(hint) = e.hint() {
        let _ = writeln!(err, "  hint: {hint}");
    }
    e.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45 * 60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("3d").unwrap_err().contains("use s, m or h"));
    }
}
