//! Interface names, as the original makes them.

use sha1::{Digest, Sha1};

/// The host-side veth of a pod: the prefix and the first 11 hex digits of sha1("<namespace>.<name>"), so the
/// name is stable for a pod and fits IFNAMSIZ with a prefix of up to 4 characters.
pub fn host_veth_name(prefix: &str, namespace: &str, name: &str) -> String {
    let digest = Sha1::digest(format!("{namespace}.{name}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{}", &hex[..11])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_original() {
        // sha1("default.nginx") = 5bd4b1c4e3dd… ; the original names this pod's veth eni5bd4b1c4e3d.
        let digest: String = Sha1::digest(b"default.nginx")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            host_veth_name("eni", "default", "nginx"),
            format!("eni{}", &digest[..11])
        );
        assert_eq!(host_veth_name("eni", "default", "nginx").len(), 14);
        assert_ne!(
            host_veth_name("eni", "default", "a"),
            host_veth_name("eni", "other", "a")
        );
    }
}
