//! The page frame (head, navigation, banner, footer) and the formatting every page shares:
//! escaping, amounts, percentages, times, keys.

use std::fmt::Write;

use umbra_ledger::{Amount, PPM, Ppm, UNIT};

/// The stylesheet, served at `/assets/style.css`.
pub const STYLE: &str = include_str!("style.css");
/// The script (progressive enhancement only: sorting in place, the countdown), served at
/// `/assets/explorer.js`.
pub const SCRIPT: &str = include_str!("explorer.js");

/// How fresh the data behind a page is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Freshness {
    /// The validator the data came from, or was last asked.
    pub validator: String,
    /// When it last answered (ms since the Unix epoch).
    pub last_answer_ms: Option<u64>,
    /// Why the latest attempt failed, if it did.
    pub failing: Option<String>,
}

/// Which navigation entry is the current page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// `/`.
    Overview,
    /// `/mixnodes`.
    MixNodes,
    /// `/gateways`.
    Gateways,
    /// `/epochs`.
    Epochs,
    /// `/guide`.
    Guide,
    /// A node or account page.
    Other,
}

/// A whole page: `body` in the frame, with the banner `freshness` calls for, refreshing
/// itself after `refresh_s` seconds if given (at the epoch's end), and a link to `api`, its
/// JSON twin.
pub fn page(
    title: &str,
    section: Section,
    freshness: &Freshness,
    refresh_s: Option<u64>,
    api: &str,
    body: &str,
) -> String {
    let mut out = String::with_capacity(body.len() + 4096);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    if let Some(seconds) = refresh_s {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{seconds}\">");
    }
    let _ = write!(
        out,
        "<title>{} · Umbra explorer</title><link rel=\"stylesheet\" href=\"/assets/style.css\"><link rel=\"icon\" href=\"data:,\"></head><body>",
        escape(title)
    );
    out.push_str("<header><a class=\"brand\" href=\"/\">Umbra explorer</a><nav>");
    for (entry, href, label) in [
        (Section::Overview, "/", "Overview"),
        (Section::MixNodes, "/mixnodes", "Mix nodes"),
        (Section::Gateways, "/gateways", "Gateways"),
        (Section::Epochs, "/epochs", "Epochs"),
        (Section::Guide, "/guide", "Delegate · run a node"),
    ] {
        let current = if entry == section {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(out, "<a href=\"{href}\"{current}>{label}</a>");
    }
    out.push_str(
        "</nav><form class=\"find\" action=\"/find\" method=\"get\"><input name=\"q\" placeholder=\"node number or account\" aria-label=\"node number or account address\"><button>Go</button></form></header>",
    );
    out.push_str(&banner(freshness));
    let _ = write!(out, "<main><h1>{}</h1>", escape(title));
    out.push_str(body);
    let _ = write!(
        out,
        "</main><footer>Data from the validator at {}{}. This page as JSON: <a href=\"{api}\">{api}</a></footer><script src=\"/assets/explorer.js\" defer></script></body></html>",
        escape(&freshness.validator),
        freshness
            .last_answer_ms
            .map(|ms| format!(", as of {}", time(ms)))
            .unwrap_or_default(),
        api = escape(api)
    );
    out
}

/// The banner of a page whose validator is failing; empty when all is well.
pub fn banner(freshness: &Freshness) -> String {
    let Some(reason) = &freshness.failing else {
        return String::new();
    };
    let since = match freshness.last_answer_ms {
        Some(ms) => format!(
            "has not answered since {}; the figures below are the ledger as it was then",
            time(ms)
        ),
        None => "has not answered yet, so there is nothing to show".to_owned(),
    };
    format!(
        "<div class=\"banner\" role=\"alert\">The validator at {} {since} ({}). The explorer keeps asking; this page refreshes itself.</div>",
        escape(&freshness.validator),
        escape(reason)
    )
}

/// `text` safe in HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// An amount in UMB, exactly (up to 6 decimals), with thousands separated: `1,309.06 UMB`.
pub fn umb(amount: Amount) -> String {
    let whole = amount.0 / UNIT.0;
    let fraction = amount.0 % UNIT.0;
    let digits = whole.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if fraction == 0 {
        format!("{grouped} UMB")
    } else {
        let decimals = format!("{fraction:06}");
        format!("{grouped}.{} UMB", decimals.trim_end_matches('0'))
    }
}

/// Parts per million as a percentage, exactly: `95%`, `13.0906%`.
pub fn percent(ppm: u64) -> String {
    let whole = ppm / 10_000;
    let fraction = ppm % 10_000;
    if fraction == 0 {
        format!("{whole}%")
    } else {
        let decimals = format!("{fraction:04}");
        format!("{whole}.{}%", decimals.trim_end_matches('0'))
    }
}

/// A [`Ppm`] as a percentage.
pub fn ppm(value: Ppm) -> String {
    percent(u64::from(value.0))
}

/// A ppm value as a fraction of 100 %, for charts.
pub fn ppm_percent(value: Ppm) -> f64 {
    f64::from(value.0) * 100.0 / f64::from(PPM.0)
}

/// A time (ms since the Unix epoch) in UTC: `2026-05-04 13:07:09 UTC`.
pub fn time(ms: u64) -> String {
    let seconds = ms / 1000;
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A duration in ms, briefly: `45 s`, `12 min 5 s`, `3 h 2 min`.
pub fn duration(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

/// Howard Hinnant's days-to-civil: the proleptic Gregorian date of a day count.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A key, shortened for tables (the whole key in its title, and copied on selection).
pub fn short_key(key: &impl std::fmt::Display) -> String {
    let text = key.to_string();
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 14 {
        return format!("<code>{}</code>", escape(&text));
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!(
        "<code title=\"{}\">{}…{}</code>",
        escape(&text),
        escape(&head),
        escape(&tail)
    )
}

/// A key in full, breakable on a narrow screen.
pub fn full_key(key: &impl std::fmt::Display) -> String {
    format!("<code class=\"key\">{}</code>", escape(&key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_written_exactly() {
        assert_eq!(umb(Amount(1_309_060_000)), "1,309.06 UMB");
        assert_eq!(umb(Amount(1)), "0.000001 UMB");
        assert_eq!(umb(Amount(1_000_000_000_000)), "1,000,000 UMB");
        assert_eq!(percent(130_906), "13.0906%");
        assert_eq!(percent(1_000_000), "100%");
        assert_eq!(percent(5), "0.0005%");
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_795_253_816_997), "2026-11-21 09:36:56 UTC");
        assert_eq!(duration(754_000), "12 min 34 s");
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn the_banner_says_which_validator_and_since_when() {
        let mut freshness = Freshness {
            validator: "http://127.0.0.1:7000".into(),
            last_answer_ms: Some(0),
            failing: None,
        };
        assert_eq!(banner(&freshness), "");
        freshness.failing = Some("connection refused".into());
        let text = banner(&freshness);
        assert!(text.contains("The validator at http://127.0.0.1:7000 has not answered since 1970-01-01 00:00:00 UTC"), "{text}");
        freshness.last_answer_ms = None;
        assert!(banner(&freshness).contains("has not answered yet"));
    }
}
