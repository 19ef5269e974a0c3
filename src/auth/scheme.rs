//! The `Authorization` header's scheme, which RFC 9110 makes case-insensitive
//! (`bearer <token>` is as good as `Bearer <token>`).

/// The credentials after `scheme` in an `Authorization` value, if it uses that scheme.
pub fn credentials<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.trim_start().split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
        .filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::credentials;

    #[test]
    fn the_scheme_is_case_insensitive() {
        for h in ["Bearer abc", "bearer abc", "BEARER  abc ", " Bearer abc"] {
            assert_eq!(credentials(h, "Bearer"), Some("abc"), "{h:?}");
        }
        assert_eq!(credentials("Basic abc", "Bearer"), None);
        assert_eq!(credentials("Bearer", "Bearer"), None);
        assert_eq!(credentials("Bearer ", "Bearer"), None);
        assert_eq!(credentials("Bearerabc", "Bearer"), None);
    }
}
