//! Text for people: sizes, and text cut to fit where it is stored or shown.

/// A byte count for people: `1 MiB`, `4 KiB`, `900 bytes`.
pub fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), marked when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (truncated; {} in all)", &text[..end], size(text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_on_a_character_boundary_and_says_how_long_it_was() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate(&"é".repeat(3000), 4096);
        assert!(cut.len() < 4096 + 64 && cut.ends_with("(truncated; 6000 bytes in all)"), "{cut}");
        assert_eq!(size(1 << 20), "1 MiB");
        assert_eq!(size(4096), "4 KiB");
    }
}
