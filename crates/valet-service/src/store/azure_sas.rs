//! Shared access signatures for Azure Blob Storage, written by hand: no maintained Rust crate
//! signs them without pulling a second HTTP stack (the `azure_storage_blob` 0.x crates bring
//! `azure_core` and its own reqwest; the old `azure_storage` is retired).
//!
//! Three kinds, all HMAC-SHA256 over a newline-separated "string to sign" (Azure docs, "Create
//! a service SAS", "Create a user delegation SAS", "Create an account SAS", version
//! [`SAS_VERSION`]):
//! - service SAS, signed with the account key: what part keys are when the deployment holds
//!   the key;
//! - user-delegation SAS, signed with a key Azure hands to an Entra ID identity: the same keys
//!   when the deployment signs in with Entra ID instead of holding the account key;
//! - account SAS, only to create the container at start (a service SAS cannot).
//!
//! The tests check each against a SAS the official Python SDK (azure-storage-blob 12.31.1,
//! `generate_blob_sas` / `generate_account_sas`) made from the same inputs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The `sv` of every SAS: the version whose string-to-sign layout is written below.
pub const SAS_VERSION: &str = "2026-10-06";

/// What signs a SAS.
#[derive(Clone)]
pub enum SasKey {
    /// The storage account key (decoded from its base64).
    Account(Vec<u8>),
    /// A user delegation key Azure issued to the service's Entra ID identity.
    Delegation(DelegationKey),
}

impl std::fmt::Debug for SasKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Account(_) => f.write_str("SasKey::Account(<redacted>)"),
            Self::Delegation(k) => write!(f, "SasKey::Delegation(until {})", k.signed_expiry),
        }
    }
}

/// A user delegation key, as `Get User Delegation Key` answers it.
#[derive(Clone)]
pub struct DelegationKey {
    /// `SignedOid`: the identity's object id.
    pub signed_oid: String,
    /// `SignedTid`: its tenant.
    pub signed_tid: String,
    /// `SignedStart`, as Azure wrote it.
    pub signed_start: String,
    /// `SignedExpiry`, as Azure wrote it.
    pub signed_expiry: String,
    /// `SignedService` (`b`).
    pub signed_service: String,
    /// `SignedVersion`.
    pub signed_version: String,
    /// `Value`, decoded: the HMAC key.
    pub value: Vec<u8>,
}

/// One blob, some permissions, a time window.
#[derive(Debug, Clone)]
pub struct BlobSas<'a> {
    /// Storage account name.
    pub account: &'a str,
    /// Container.
    pub container: &'a str,
    /// Blob name, unencoded.
    pub blob: &'a str,
    /// `sp`, in Azure's order (`racwd…`): part keys are `cw`, create and write only.
    pub permissions: &'a str,
    /// `st`: a few minutes in the past, for clock skew.
    pub start: OffsetDateTime,
    /// `se`.
    pub expiry: OffsetDateTime,
    /// `spr=https` (else `https,http`, for a loopback emulator).
    pub https_only: bool,
}

/// Seconds precision, `Z`: the only form Azure documents for `st` and `se`.
pub fn sas_time(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn hmac_b64(key: &[u8], text: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    STANDARD.encode(ring::hmac::sign(&key, text.as_bytes()).as_ref())
}

fn protocol(https_only: bool) -> &'static str {
    if https_only { "https" } else { "https,http" }
}

/// The string to sign of a blob SAS, one field a line: permissions, start, expiry and
/// resource; `identity` (the service SAS's identifier, or the delegation key's fields); the
/// IP range (never set); protocol, version and resource type `b`; then `unset_after` fields we
/// never set (snapshot, encryption scope, and for a user-delegation SAS signed request
/// headers and query; then the five response header overrides).
fn blob_string_to_sign(
    sas: &BlobSas<'_>,
    st: &str,
    se: &str,
    resource: &str,
    identity: &[&str],
    unset_after: usize,
) -> String {
    let mut fields = vec![sas.permissions, st, se, resource];
    fields.extend_from_slice(identity);
    fields.extend(["", protocol(sas.https_only), SAS_VERSION, "b"]);
    fields.extend(std::iter::repeat_n("", unset_after));
    fields.join("\n")
}

/// The SAS query parameters (unencoded `(name, value)` pairs, `sig` last) for one blob.
pub fn blob_sas(sas: &BlobSas<'_>, key: &SasKey) -> Vec<(&'static str, String)> {
    let (st, se) = (sas_time(sas.start), sas_time(sas.expiry));
    let spr = protocol(sas.https_only);
    let resource = format!("/blob/{}/{}/{}", sas.account, sas.container, sas.blob);
    let mut query = vec![
        ("st", st.clone()),
        ("se", se.clone()),
        ("sp", sas.permissions.to_owned()),
        ("spr", spr.to_owned()),
        ("sv", SAS_VERSION.to_owned()),
        ("sr", "b".to_owned()),
    ];
    let string_to_sign = match key {
        // signedIdentifier: none.
        SasKey::Account(_) => blob_string_to_sign(sas, &st, &se, &resource, &[""], 7),
        SasKey::Delegation(k) => {
            query.extend([
                ("skoid", k.signed_oid.clone()),
                ("sktid", k.signed_tid.clone()),
                ("skt", k.signed_start.clone()),
                ("ske", k.signed_expiry.clone()),
                ("sks", k.signed_service.clone()),
                ("skv", k.signed_version.clone()),
            ]);
            // The key's fields, then five we never set: authorized and unauthorized object
            // ids, correlation id, delegated user tenant and object id.
            let identity = [
                k.signed_oid.as_str(),
                &k.signed_tid,
                &k.signed_start,
                &k.signed_expiry,
                &k.signed_service,
                &k.signed_version,
                "",
                "",
                "",
                "",
                "",
            ];
            blob_string_to_sign(sas, &st, &se, &resource, &identity, 9)
        }
    };
    let secret = match key {
        SasKey::Account(k) => k.as_slice(),
        SasKey::Delegation(k) => k.value.as_slice(),
    };
    query.push(("sig", hmac_b64(secret, &string_to_sign)));
    query
}

/// An account SAS allowing `permissions` on containers (`srt=c`) of the blob service: used
/// once at start to create the container.
pub fn container_account_sas(
    account: &str,
    account_key: &[u8],
    permissions: &str,
    start: OffsetDateTime,
    expiry: OffsetDateTime,
    https_only: bool,
) -> Vec<(&'static str, String)> {
    let (st, se) = (sas_time(start), sas_time(expiry));
    let spr = protocol(https_only);
    let string_to_sign =
        format!("{account}\n{permissions}\nb\nc\n{st}\n{se}\n\n{spr}\n{SAS_VERSION}\n\n");
    vec![
        ("st", st),
        ("se", se),
        ("sp", permissions.to_owned()),
        ("spr", spr.to_owned()),
        ("sv", SAS_VERSION.to_owned()),
        ("ss", "b".to_owned()),
        ("srt", "c".to_owned()),
        ("sig", hmac_b64(account_key, &string_to_sign)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Azurite's published development account key (not a secret).
    const DEV_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn at(h: u8, m: u8, s: u8) -> OffsetDateTime {
        time::Date::from_calendar_date(2026, time::Month::January, 2)
            .unwrap()
            .with_hms(h, m, s)
            .unwrap()
            .assume_utc()
    }

    fn sig(query: &[(&str, String)]) -> String {
        query.iter().find(|(n, _)| *n == "sig").unwrap().1.clone()
    }

    fn part_sas(account: &str) -> BlobSas<'_> {
        BlobSas {
            account,
            container: "uploads",
            blob: "users/alice/film part.bin",
            permissions: "cw",
            start: at(3, 4, 5),
            expiry: at(3, 19, 5),
            https_only: true,
        }
    }

    // Expected signatures: azure-storage-blob 12.31.1, generate_blob_sas(..., permission=
    // BlobSasPermissions(create=True, write=True), start=2026-01-02T03:04:05Z,
    // expiry=2026-01-02T03:19:05Z, protocol="https"), which signs with sv=2026-10-06.
    #[test]
    fn service_sas_matches_the_official_sdk() {
        let key = SasKey::Account(STANDARD.decode(DEV_KEY).unwrap());
        let query = blob_sas(&part_sas("devstoreaccount1"), &key);
        assert_eq!(sig(&query), "7WH/ldAYn0JjreMfexRsVr80Vmv40xvczi3zbkRaNjI=");
        let names: Vec<&str> = query.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["st", "se", "sp", "spr", "sv", "sr", "sig"]);
        assert!(query.contains(&("st", "2026-01-02T03:04:05Z".to_owned())));
        assert!(query.contains(&("sp", "cw".to_owned())));
    }

    #[test]
    fn user_delegation_sas_matches_the_official_sdk() {
        // A made-up key, as Get User Delegation Key would return it; SDK given the same.
        let key = SasKey::Delegation(DelegationKey {
            signed_oid: "11111111-2222-3333-4444-555555555555".into(),
            signed_tid: "66666666-7777-8888-9999-000000000000".into(),
            signed_start: "2026-01-02T00:00:00Z".into(),
            signed_expiry: "2026-01-03T00:00:00Z".into(),
            signed_service: "b".into(),
            signed_version: "2025-11-05".into(),
            value: STANDARD
                .decode("c2VjcmV0LWRlbGVnYXRpb24ta2V5LWZvci10ZXN0cw==")
                .unwrap(),
        });
        let query = blob_sas(&part_sas("myaccount"), &key);
        assert_eq!(sig(&query), "uXPJ7ZI8WAqafCUqAovuaQD9CizXXdruZcBV896JUDE=");
        assert!(query.contains(&("skoid", "11111111-2222-3333-4444-555555555555".to_owned())));
        assert!(
            !format!("{key:?}").contains("c2VjcmV0"),
            "the key is never printed"
        );
    }

    #[test]
    fn account_sas_matches_the_official_sdk() {
        // generate_account_sas(..., ResourceTypes(container=True), AccountSasPermissions(
        // create=True), same times, protocol="https,http").
        let query = container_account_sas(
            "devstoreaccount1",
            &STANDARD.decode(DEV_KEY).unwrap(),
            "c",
            at(3, 4, 5),
            at(3, 19, 5),
            false,
        );
        assert_eq!(sig(&query), "uJ4A2XLQJlrCQcuLimIbXIpb+sNoHiUdWF6OVPliJu4=");
    }

    #[test]
    fn a_sas_for_one_blob_does_not_sign_another() {
        let key = SasKey::Account(STANDARD.decode(DEV_KEY).unwrap());
        let one = blob_sas(&part_sas("devstoreaccount1"), &key);
        let mut other = part_sas("devstoreaccount1");
        other.blob = "users/alice/other.bin";
        assert_ne!(sig(&one), sig(&blob_sas(&other, &key)));
    }
}
