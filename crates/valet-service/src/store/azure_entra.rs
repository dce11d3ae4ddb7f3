//! Entra ID for Azure (`auth = "entra"`): the service signs in as an application (OAuth 2.0
//! client credentials, scope `https://storage.azure.com/.default`), authenticates its own calls
//! with that token, and asks Azure for a user delegation key (Get User Delegation Key) to sign
//! user-delegation SAS with, so the account key is never needed. Neither step can run against
//! Azurite; the SAS signed with the key is tested in `azure_sas.rs`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;

use super::azure_sas::{self, DelegationKey, SAS_VERSION};
use crate::Error;
use crate::config::AzureConfig;

/// Entra ID sign-in of the service (client credentials) and the delegation key it gets.
pub(super) struct Entra {
    token_url: Url,
    client_id: String,
    client_secret: String,
    token: Mutex<Option<(String, Instant)>>,
    delegation: Mutex<Option<(DelegationKey, Instant)>>,
}

/// Delegation keys are asked for a day and renewed when less than an hour is left.
const DELEGATION_LIFE: Duration = Duration::from_secs(24 * 3600);
const RENEW_MARGIN: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct DelegationKeyXml {
    #[serde(rename = "SignedOid")]
    oid: String,
    #[serde(rename = "SignedTid")]
    tid: String,
    #[serde(rename = "SignedStart")]
    start: String,
    #[serde(rename = "SignedExpiry")]
    expiry: String,
    #[serde(rename = "SignedService")]
    service: String,
    #[serde(rename = "SignedVersion")]
    version: String,
    #[serde(rename = "Value")]
    value: String,
}

impl Entra {
    /// Sign-in settings from `[store.azure]`; nothing is asked of Entra ID yet.
    pub(super) fn new(config: &AzureConfig, client_secret: String) -> Result<Self, Error> {
        let tenant = config.tenant_id.clone().unwrap_or_default();
        Ok(Self {
            token_url: config
                .authority
                .join(&format!("{tenant}/oauth2/v2.0/token"))
                .map_err(|e| Error::Config(format!("store.azure.authority: {e}")))?,
            client_id: config.client_id.clone().unwrap_or_default(),
            client_secret,
            token: Mutex::new(None),
            delegation: Mutex::new(None),
        })
    }

    /// An access token for `https://storage.azure.com`, cached until 5 minutes before expiry.
    pub(super) async fn access_token(&self, http: &reqwest::Client) -> Result<String, Error> {
        const OP: &str = "EntraSignIn";
        if let Some((token, until)) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
            && Instant::now() < until
        {
            return Ok(token);
        }
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", &self.client_secret)
            .append_pair("scope", "https://storage.azure.com/.default")
            .finish();
        let unavailable = |message: String| Error::StoreUnavailable {
            operation: OP,
            message,
        };
        let response = http
            .post(self.token_url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "Entra ID answered HTTP {}",
                response.status()
            )));
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| unavailable(format!("unreadable token answer: {}", e.without_url())))?;
        let until = Instant::now() + Duration::from_secs(answer.expires_in.saturating_sub(300));
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((answer.access_token.clone(), until));
        Ok(answer.access_token)
    }

    /// The current user delegation key (Get User Delegation Key), renewed before it ends.
    pub(super) async fn delegation_key(
        &self,
        http: &reqwest::Client,
        endpoint: &str,
    ) -> Result<DelegationKey, Error> {
        const OP: &str = "GetUserDelegationKey";
        if let Some((key, until)) = self
            .delegation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            && Instant::now() < until
        {
            return Ok(key);
        }
        let token = self.access_token(http).await?;
        let now = OffsetDateTime::now_utc();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><KeyInfo><Start>{}</Start><Expiry>{}</Expiry></KeyInfo>",
            azure_sas::sas_time(now - Duration::from_secs(300)),
            azure_sas::sas_time(now + DELEGATION_LIFE)
        );
        let unavailable = |message: String| Error::StoreUnavailable {
            operation: OP,
            message,
        };
        let response = http
            .post(format!(
                "{endpoint}/?restype=service&comp=userdelegationkey"
            ))
            .bearer_auth(token)
            .header("x-ms-version", SAS_VERSION)
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "Azure answered HTTP {}",
                response.status()
            )));
        }
        let text = super::http::text("GetUserDelegationKey", response).await?;
        let xml: DelegationKeyXml = quick_xml::de::from_str(&text)
            .map_err(|e| unavailable(format!("unreadable key: {e}")))?;
        let key = DelegationKey {
            signed_oid: xml.oid,
            signed_tid: xml.tid,
            signed_start: xml.start,
            signed_expiry: xml.expiry,
            signed_service: xml.service,
            signed_version: xml.version,
            value: STANDARD
                .decode(xml.value)
                .map_err(|_| unavailable("the delegation key is not base64".to_owned()))?,
        };
        let until = Instant::now() + DELEGATION_LIFE - RENEW_MARGIN;
        *self.delegation.lock().unwrap_or_else(|p| p.into_inner()) = Some((key.clone(), until));
        Ok(key)
    }
}
