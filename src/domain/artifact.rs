//! What a push put in the registry, as Herald learns it from the manifest itself: an image,
//! an index of platforms, or a referrer (a signature, an SBOM, an attestation) attached to
//! another manifest. A registry's notification cannot say this (distribution's maintainers
//! keep manifests out of events), so Herald reads the manifest by digest; without access to
//! the registry it says what the notification alone shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most bytes of a manifest Herald reads: distribution refuses manifests over 4 MiB.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// The most platforms, annotations and subject tags kept per event.
const MAX_LISTED: usize = 64;
/// The longest annotation value kept, in bytes (longer ones are cut at a char boundary).
const MAX_ANNOTATION_BYTES: usize = 1024;

/// Media types of indexes (OCI) and manifest lists (Docker).
pub const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Media types of single manifests, every manifest a registry serves by digest.
pub const MANIFEST_MEDIA_TYPES: [&str; 5] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.artifact.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// A single image manifest.
    Image,
    /// An index (manifest list) of per-platform images.
    Index,
    /// A manifest about another one: it names a `subject`, or is tagged in cosign's
    /// `sha256-<hex>.sig|.att|.sbom` scheme.
    Referrer,
}

impl ArtifactKind {
    pub const ALL: [ArtifactKind; 3] = [Self::Image, Self::Index, Self::Referrer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Index => "index",
            Self::Referrer => "referrer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where an event's facts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FactsOrigin {
    /// The manifest, read from the registry by digest.
    Registry,
    /// The notification alone: its media type and tag (no artifact type, no platforms).
    Notification,
}

/// What was pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArtifactFacts {
    pub kind: ArtifactKind,
    /// The manifest's `artifactType`, else its config's media type (a cosign-tagged
    /// referrer with a plain image config: its first layer's media type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The digest of the manifest a referrer is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The tags of the subject in the same repository, as Herald knows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_tags: Vec<String>,
    /// An index's platforms (`linux/amd64`, `linux/arm/v7`), attestation entries left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// The manifest's `org.opencontainers.image.*` annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub origin: FactsOrigin,
}

impl ArtifactFacts {
    /// What a referrer is, in words: "an SBOM", "a signature", "an attestation", or "an
    /// artifact" (for chat messages).
    pub fn referrer_noun(&self) -> &'static str {
        let t = self.artifact_type.as_deref().unwrap_or_default();
        if t.contains("spdx") || t.contains("cyclonedx") || t.contains("sbom") {
            "an SBOM"
        } else if t.contains("signature")
            || t.contains("simplesigning")
            || t.contains("notary")
            || t.contains("sigstore.bundle")
        {
            "a signature"
        } else if t.contains("in-toto") || t.contains("dsse") || t.contains("attestation") {
            "an attestation"
        } else {
            "an artifact"
        }
    }
}

/// A cosign-scheme tag (`sha256-<64 hex>.sig`, `.att` or `.sbom`): the subject's digest and
/// the suffix.
pub fn cosign_tag(tag: &str) -> Option<(String, &str)> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_once('.')?;
    let is_hex = hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (is_hex && matches!(suffix, "sig" | "att" | "sbom")).then(|| (format!("sha256:{hex}"), suffix))
}

/// Whether a media type (its essence, without parameters) is a manifest's or an index's.
pub fn is_manifest_media_type(media_type: &str) -> bool {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    INDEX_MEDIA_TYPES.contains(&essence.as_str())
        || MANIFEST_MEDIA_TYPES.contains(&essence.as_str())
}

/// What the notification alone says of a push that `is_manifest`: its kind from the media
/// type and the tag. `None` for what is not a manifest.
pub fn from_notification(
    media_type: Option<&str>,
    tag: Option<&str>,
    is_manifest: bool,
) -> Option<ArtifactFacts> {
    if !is_manifest {
        return None;
    }
    let essence = media_type
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let kind = if INDEX_MEDIA_TYPES.contains(&essence.as_str()) {
        ArtifactKind::Index
    } else {
        ArtifactKind::Image
    };
    let mut facts = ArtifactFacts {
        kind,
        artifact_type: None,
        subject: None,
        subject_tags: Vec::new(),
        platforms: Vec::new(),
        annotations: BTreeMap::new(),
        origin: FactsOrigin::Notification,
    };
    if let Some((subject, _)) = tag.and_then(cosign_tag) {
        facts.kind = ArtifactKind::Referrer;
        facts.subject = Some(subject);
    }
    Some(facts)
}

/// Why a manifest could not be read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the manifest cannot be read: {0}")]
pub struct NotAManifest(pub String);

/// The parts of a manifest or index that say what it is; everything else is ignored.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Manifest {
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Vec<Descriptor>,
    manifests: Vec<Descriptor>,
    subject: Option<Descriptor>,
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: Option<String>,
    platform: Option<Platform>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// The facts of a manifest served with `media_type` (the registry's `Content-Type`),
/// pushed with `tag` if it was tagged.
pub fn from_manifest(
    media_type: &str,
    bytes: &[u8],
    tag: Option<&str>,
) -> Result<ArtifactFacts, NotAManifest> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(NotAManifest(format!(
            "it is larger than {MAX_MANIFEST_BYTES} bytes"
        )));
    }
    let m: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| NotAManifest(format!("it is not a JSON manifest ({e})")))?;
    // The body's own mediaType wins over a proxy's Content-Type; either may be absent.
    let media_type = m
        .media_type
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or(media_type);
    let is_index =
        INDEX_MEDIA_TYPES.contains(&media_type) || (m.config.is_none() && !m.manifests.is_empty());
    let cosign = tag.and_then(cosign_tag);
    let subject = m
        .subject
        .as_ref()
        .and_then(|s| s.digest.clone())
        .or_else(|| cosign.as_ref().map(|(digest, _)| digest.clone()));
    let kind = if subject.is_some() {
        ArtifactKind::Referrer
    } else if is_index {
        ArtifactKind::Index
    } else {
        ArtifactKind::Image
    };
    let config_type = m.config.as_ref().and_then(|c| c.media_type.clone());
    let generic_config = config_type.as_deref().is_none_or(|t| {
        t == "application/vnd.oci.image.config.v1+json"
            || t == "application/vnd.oci.empty.v1+json"
            || t == "application/vnd.docker.container.image.v1+json"
    });
    let artifact_type = m
        .artifact_type
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| match (&cosign, generic_config) {
            (Some(_), true) => m.layers.first().and_then(|l| l.media_type.clone()),
            _ => config_type.clone(),
        })
        .map(|t| bounded(&t));
    let mut platforms: Vec<String> = Vec::new();
    for p in m.manifests.iter().filter_map(|d| d.platform.as_ref()) {
        if p.os.is_empty() || p.os == "unknown" || p.architecture == "unknown" {
            continue; // buildx's attestation entries
        }
        let name = match p.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        };
        let name = bounded(&name);
        if !platforms.contains(&name) && platforms.len() < MAX_LISTED {
            platforms.push(name);
        }
    }
    let annotations = m
        .annotations
        .into_iter()
        .filter(|(k, _)| k.starts_with("org.opencontainers.image.") && k.len() <= 128)
        .take(MAX_LISTED)
        .map(|(k, v)| (k, bounded(&v)))
        .collect();
    Ok(ArtifactFacts {
        kind,
        artifact_type,
        subject: subject.map(|s| bounded(&s)),
        subject_tags: Vec::new(),
        platforms,
        annotations,
        origin: FactsOrigin::Registry,
    })
}

/// At most `MAX_LISTED` of `tags`, sorted, for a referrer's subject.
pub fn bounded_tags(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags.truncate(MAX_LISTED);
    tags
}

fn bounded(s: &str) -> String {
    if s.len() <= MAX_ANNOTATION_BYTES {
        return s.to_string();
    }
    let mut end = MAX_ANNOTATION_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn facts(media_type: &str, body: serde_json::Value, tag: Option<&str>) -> ArtifactFacts {
        from_manifest(media_type, &serde_json::to_vec(&body).unwrap(), tag).unwrap()
    }

    #[test]
    fn an_index_lists_its_platforms_without_attestations() {
        let f = facts(
            INDEX_MEDIA_TYPES[0],
            json!({"schemaVersion": 2, "manifests": [
                {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": "sha256:b", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"digest": "sha256:c", "platform": {"os": "unknown", "architecture": "unknown"}}
            ], "annotations": {"org.opencontainers.image.version": "1.0", "com.example": "x"}}),
            Some("1.0"),
        );
        assert_eq!(f.kind, ArtifactKind::Index);
        assert_eq!(f.platforms, ["linux/amd64", "linux/arm/v7"]);
        assert_eq!(f.annotations.len(), 1, "only org.opencontainers.image.*");
        assert_eq!(f.artifact_type, None);
    }

    #[test]
    fn a_manifest_with_a_subject_is_a_referrer_of_its_artifact_type() {
        let f = facts(
            MANIFEST_MEDIA_TYPES[0],
            json!({"schemaVersion": 2, "artifactType": "application/spdx+json",
                   "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:e"},
                   "layers": [], "subject": {"digest": "sha256:s"}}),
            None,
        );
        assert_eq!(f.kind, ArtifactKind::Referrer);
        assert_eq!(f.subject.as_deref(), Some("sha256:s"));
        assert_eq!(f.artifact_type.as_deref(), Some("application/spdx+json"));
        assert_eq!(f.referrer_noun(), "an SBOM");
    }

    #[test]
    fn without_artifact_type_the_config_type_names_it() {
        let f = facts(
            MANIFEST_MEDIA_TYPES[0],
            json!({"config": {"mediaType": "application/vnd.example.sbom+json"}, "subject": {"digest": "sha256:s"}}),
            None,
        );
        assert_eq!(
            f.artifact_type.as_deref(),
            Some("application/vnd.example.sbom+json")
        );
        let image = facts(
            MANIFEST_MEDIA_TYPES[1],
            json!({"config": {"mediaType": "application/vnd.docker.container.image.v1+json"}, "layers": []}),
            Some("latest"),
        );
        assert_eq!(image.kind, ArtifactKind::Image);
        assert_eq!(
            image.artifact_type.as_deref(),
            Some("application/vnd.docker.container.image.v1+json")
        );
    }

    #[test]
    fn a_cosign_tag_marks_a_referrer_of_its_digest() {
        let tag = format!("sha256-{HEX}.sig");
        let f = facts(
            MANIFEST_MEDIA_TYPES[0],
            json!({"config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
                   "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json"}]}),
            Some(&tag),
        );
        assert_eq!(f.kind, ArtifactKind::Referrer);
        assert_eq!(f.subject, Some(format!("sha256:{HEX}")));
        assert_eq!(f.referrer_noun(), "a signature");
        let n = from_notification(Some(MANIFEST_MEDIA_TYPES[0]), Some(&tag), true).unwrap();
        assert_eq!(
            (n.kind, n.origin),
            (ArtifactKind::Referrer, FactsOrigin::Notification)
        );
        assert!(cosign_tag("sha256-abc.sig").is_none());
        assert!(cosign_tag(&format!("sha256-{HEX}.exe")).is_none());
    }

    #[test]
    fn the_notification_alone_tells_an_index_from_an_image_and_nothing_of_blobs() {
        assert_eq!(
            from_notification(Some(INDEX_MEDIA_TYPES[1]), Some("1.0"), true)
                .unwrap()
                .kind,
            ArtifactKind::Index
        );
        assert!(from_notification(Some("application/octet-stream"), None, false).is_none());
        assert!(is_manifest_media_type(
            "application/vnd.oci.image.index.v1+json; charset=x"
        ));
        assert!(!is_manifest_media_type("application/octet-stream"));
    }

    #[test]
    fn what_is_not_a_manifest_is_refused_with_the_reason() {
        let e = from_manifest(MANIFEST_MEDIA_TYPES[0], b"not json", None).unwrap_err();
        assert!(e.to_string().contains("not a JSON manifest"), "{e}");
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(from_manifest(MANIFEST_MEDIA_TYPES[0], &big, None).is_err());
    }
}
