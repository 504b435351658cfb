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

    /// Literal names, computed outside this code (`printf %s default.nginx | sha1sum` starts c440f455693b):
    /// the original names the host veth `eni` + the first 11 hex digits of sha1("<namespace>.<name>").
    #[test]
    fn names_match_the_original() {
        assert_eq!(host_veth_name("eni", "default", "nginx"), "enic440f455693");
        assert_eq!(
            host_veth_name("eni", "kube-system", "coredns-5d78c9869d-abcde"),
            "eni4d5f75c480c"
        );
        assert_eq!(host_veth_name("eni", "default", "a"), "eniacd53aa4120");
        assert_eq!(host_veth_name("eni", "other", "a"), "eni2cbd72e9db9");
        // AWS_VPC_K8S_CNI_VETHPREFIX changes the prefix only.
        assert_eq!(host_veth_name("vpc", "default", "nginx"), "vpcc440f455693");
    }
}
