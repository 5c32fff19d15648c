//! Names: validation of resource names and the names derived from them.

use sha1::{Digest, Sha1};

/// Longest DNS-1123 label.
pub const DNS1123_LABEL_MAX: usize = 63;

/// Why a name is empty or longer than `max`.
fn length_problem(name: &str, max: usize) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    (name.len() > max).then(|| format!("must be no more than {max} characters, got {}", name.len()))
}

/// Why a name is not a DNS-1123 label.
pub fn dns1123_label_problem(name: &str) -> Option<String> {
    if let Some(problem) = length_problem(name, DNS1123_LABEL_MAX) {
        return Some(problem);
    }
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if let Some(bad) = name.chars().find(|&c| !valid_char(c)) {
        return Some(format!(
            "must consist of lower case alphanumeric characters or '-', found {bad:?}"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("must start and end with an alphanumeric character".to_owned());
    }
    None
}

/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;

/// Why a name is not a DNS-1123 subdomain: labels joined by dots, at most 253 characters, as
/// Kubernetes requires of a custom resource's name (a namespace must be a label).
pub fn dns1123_subdomain_problem(name: &str) -> Option<String> {
    if let Some(problem) = length_problem(name, DNS1123_SUBDOMAIN_MAX) {
        return Some(problem);
    }
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if let Some(bad) = name.chars().find(|&c| !valid_char(c)) {
        return Some(format!(
            "must consist of lower case alphanumeric characters, '-' or '.', found {bad:?}"
        ));
    }
    let bad_part = |part: &str| part.is_empty() || part.starts_with('-') || part.ends_with('-');
    if name.split('.').any(bad_part) {
        return Some(
            "must start and end with an alphanumeric character, and so must every part \
             between dots"
                .to_owned(),
        );
    }
    None
}

/// The longest `re-<re>-` prefix, so that `re-<re>-<uuid>` fits in 63 characters (63 − 36).
pub const RESOURCE_PREFIX_MAX: usize = 27;

/// The name of the resources made for a registered API and of its service class:
/// `re-<re>-<id>`, the RE part truncated so that `re-<re>-` is at most 27 characters
/// (reference §2.4).
pub fn resource_name(re: &str, service_id: &str) -> String {
    let max_re = RESOURCE_PREFIX_MAX - "re--".len();
    let re_part: String = re.chars().take(max_re).collect();
    format!("re-{re_part}-{service_id}")
}

/// The `name` of a service entry in the RE's `spec.services`: the display name lower-cased,
/// runs of non-alphanumerics replaced by `-`, a trailing `-` trimmed, cut to 57 characters,
/// then `-` and the first 5 hex digits of sha1(id) (reference §2.4).
pub fn service_entry_name(display_name: &str, service_id: &str) -> String {
    let mut normalized = String::with_capacity(display_name.len());
    let mut in_run = false;
    for c in display_name.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            normalized.push(c);
            in_run = false;
        } else if !in_run {
            normalized.push('-');
            in_run = true;
        }
    }
    let trimmed = normalized.trim_end_matches('-');
    let cut: String = trimmed.chars().take(57).collect();
    let digest = Sha1::digest(service_id.as_bytes());
    let hex = crate::hex::lower(&digest);
    format!("{cut}-{}", &hex[..5])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns1123_labels() {
        for ok in ["ec-default", "a", "re1", "0abc", &"a".repeat(63)] {
            assert_eq!(dns1123_label_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn rejects_names_that_are_not_dns1123_labels() {
        for bad in [
            "",
            "system_prod",
            "Upper",
            "-lead",
            "trail-",
            "dot.ted",
            &"a".repeat(64),
        ] {
            assert!(dns1123_label_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn accepts_dns1123_subdomains() {
        for ok in [
            "stage.commerce.kyma.local",
            "a",
            "ec-default",
            "0.1-a.b2",
            &format!("{}.{}", "a".repeat(63), "b".repeat(189)),
        ] {
            assert_eq!(dns1123_subdomain_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn rejects_names_that_are_not_dns1123_subdomains() {
        for bad in [
            "",
            "Stage.commerce",
            "sub_1",
            ".lead",
            "trail.",
            "a..b",
            "a.-b",
            "a-.b",
            &"a".repeat(254),
        ] {
            assert!(dns1123_subdomain_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn resource_name_truncates_long_remote_environment_names() {
        let id = "01a702b8-e302-4e62-b678-8d361b627e49";
        assert_eq!(
            resource_name("ec-default", id),
            "re-ec-default-01a702b8-e302-4e62-b678-8d361b627e49"
        );
        let long = resource_name(&"x".repeat(40), id);
        assert_eq!(long.len(), 63);
        assert!(long.starts_with(&format!("re-{}-", "x".repeat(23))));
    }

    #[test]
    fn service_entry_name_normalizes_and_appends_an_id_hash() {
        let name = service_entry_name("My Service -- Orders!", "id-1");
        let (stem, hash) = name.rsplit_once('-').unwrap_or_default();
        assert_eq!(stem, "my-service-orders");
        assert_eq!(hash.len(), 5);
        let long = service_entry_name(&"a".repeat(100), "id-1");
        assert_eq!(long.len(), 57 + 6);
    }
}
