//! How the bench writes figures in text: counts, rates, ratios, sizes. The
//! run, the plan and the report all print figures, so the formatting is their
//! shared leaf, imported by each and importing none of them.

/// `12 345` for large figures, three significant digits for small ones.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "—".into();
    }
    if value.abs() >= 100.0 {
        let digits = format!("{:.0}", value.abs());
        let mut grouped = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index) % 3 == 0 {
                grouped.push(' ');
            }
            grouped.push(digit);
        }
        if value < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else if value == 0.0 {
        "0".into()
    } else {
        format!("{value:.3}")
    }
}

/// A count: `50`, `1 000`, `100 000`.
pub fn count(value: u64) -> String {
    number(value as f64)
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `×4.2`, `×120`, `×0.53`.
pub fn times(ratio: f64) -> String {
    if !ratio.is_finite() {
        "—".into()
    } else if ratio >= 10.0 {
        format!("×{ratio:.0}")
    } else if ratio >= 1.0 {
        format!("×{ratio:.1}")
    } else {
        format!("×{ratio:.2}")
    }
}

/// `63 %`.
pub fn percent(fraction: f64) -> String {
    if fraction.is_finite() {
        format!("{:.0} %", fraction * 100.0)
    } else {
        "—".into()
    }
}

/// `10 KiB`, `1 MiB`, `64 MiB`.
pub fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(number(1_234_567.4), "1 234 567");
        assert_eq!(number(123.6), "124");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(1.2345), "1.23");
        assert_eq!(number(0.01234), "0.012");
        assert_eq!(number(f64::NAN), "—");
        assert_eq!(times(123.4), "×123");
        assert_eq!(times(4.25), "×4.2");
        assert_eq!(times(0.5), "×0.50");
        assert_eq!(percent(0.634), "63 %");
    }
}
