//! The app's state: where its data lives, the sign-in, the settings, and the transfer list
//! (present while signed in). Commands are thin calls into this and the engine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use valet_engine::transfers::Transfers;
use valet_engine::{Engine, Journal, RateLimit, SecretStore, SecretString, Session, SignIn};

use crate::dto::{SessionInfo, Settings, UiError};
use crate::settings;

/// Shared by every command (Tauri managed state).
pub struct AppState {
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    keyring: Arc<dyn SecretStore>,
    settings: Mutex<Settings>,
    /// The bandwidth limit every upload shares; the settings change its rate in place.
    limit: Arc<RateLimit>,
    signed_in: Mutex<Option<Transfers>>,
    /// Counts sign-ins, so that the UI pump notices a new transfer list.
    generation: AtomicU64,
    /// Why the saved sign-in did not work at the last check, for the sign-in screen.
    problem: Mutex<Option<String>>,
}

impl AppState {
    /// The state for `data_dir`, signed in again silently when a sign-in was saved there.
    /// Must run inside the async runtime (the transfer list starts its uploads on it).
    pub fn open(
        data_dir: PathBuf,
        log_file: PathBuf,
        keyring: Arc<dyn SecretStore>,
    ) -> (Self, Option<UiError>) {
        let (settings, problem) = match settings::load(&data_dir) {
            Ok(s) => (s, None),
            Err(e) => (Settings::default(), Some(e)),
        };
        let state = Self {
            data_dir,
            log_file,
            keyring,
            settings: Mutex::new(settings),
            limit: Arc::new(RateLimit::new(RateLimit::UNLIMITED)),
            signed_in: Mutex::new(None),
            generation: AtomicU64::new(0),
            problem: Mutex::new(None),
        };
        let restored = match Session::saved(&state.data_dir, state.keyring.clone()) {
            Ok(session) => state.start(session).err(),
            Err(valet_engine::Error::NotSignedIn) => None,
            Err(e) => Some(UiError::from(e)),
        };
        (state, problem.or(restored))
    }

    /// The transfer list, or `not_signed_in`.
    pub fn transfers(&self) -> Result<Transfers, UiError> {
        self.transfers_if_signed_in()
            .ok_or_else(|| UiError::new("not_signed_in", "Sign in first."))
    }

    /// The transfer list if signed in.
    pub fn transfers_if_signed_in(&self) -> Option<Transfers> {
        lock(&self.signed_in).clone()
    }

    /// The transfer list and its generation (bumped at each sign-in), if signed in.
    pub fn transfers_with_generation(&self) -> Option<(u64, Transfers)> {
        let list = lock(&self.signed_in).clone()?;
        Some((self.generation.load(Ordering::Acquire), list))
    }

    pub fn session_info(&self) -> SessionInfo {
        let sign_in = SignIn::load(&self.data_dir).ok().flatten();
        let signed_in = lock(&self.signed_in).is_some();
        SessionInfo {
            signed_in,
            server: sign_in.as_ref().map(|s| s.server.clone()),
            user: sign_in.map(|s| s.user),
            suggested_server: std::env::var("VALET_SERVER").ok().filter(|s| !s.is_empty()),
            problem: lock(&self.problem).clone(),
        }
    }

    /// Signs in with a password; the refresh token goes to the OS keyring.
    pub async fn sign_in(
        &self,
        server: &str,
        user: &str,
        password: SecretString,
    ) -> Result<SessionInfo, UiError> {
        if user.trim().is_empty() {
            return Err(UiError::new("invalid", "Enter your account name."));
        }
        let session = Session::login(
            server.trim(),
            user.trim(),
            password,
            self.keyring.clone(),
            &self.data_dir,
        )
        .await?;
        self.start(session)?;
        *lock(&self.problem) = None;
        Ok(self.session_info())
    }

    /// Pauses every upload (they resume after the next sign-in), revokes the sign-in on the
    /// service and forgets it here.
    pub async fn sign_out(&self) -> Result<(), UiError> {
        if let Some(transfers) = lock(&self.signed_in).take() {
            transfers.pause_all();
        }
        let session = match Session::saved(&self.data_dir, self.keyring.clone()) {
            Ok(session) => session,
            Err(valet_engine::Error::NotSignedIn) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if let Some(not_revoked) = session.logout(&self.data_dir).await? {
            tracing::warn!(error = %not_revoked, "signed out here; the service did not revoke the sign-in");
        }
        Ok(())
    }

    /// Notes that the saved sign-in no longer works (revoked, expired), for the sign-in
    /// screen, and stops using it.
    pub fn sign_in_failed(&self, problem: String) {
        if let Some(transfers) = lock(&self.signed_in).take() {
            transfers.pause_all();
        }
        *lock(&self.problem) = Some(problem);
    }

    pub fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    /// Checks, saves and applies new settings.
    pub fn set_settings(&self, new: Settings) -> Result<Settings, UiError> {
        settings::save(&self.data_dir, &new)?;
        if let Some(transfers) = lock(&self.signed_in).as_ref() {
            transfers.set_options(settings::transfer_options(&new, &self.limit));
        }
        *lock(&self.settings) = new.clone();
        Ok(new)
    }

    /// Starts the transfer list over `session` and lists the uploads an earlier run left
    /// unfinished, so they continue.
    fn start(&self, session: Session) -> Result<(), UiError> {
        let journal = Journal::open_in(&self.data_dir)?;
        let options = settings::transfer_options(&self.settings(), &self.limit);
        let transfers = Transfers::new(Engine::new(session, journal), options);
        let restoring = transfers.clone();
        tauri::async_runtime::spawn(async move {
            match restoring.restore().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(uploads = n, "continuing unfinished uploads"),
                Err(e) => tracing::warn!(error = %e, "could not read unfinished uploads"),
            }
        });
        let mut signed_in = lock(&self.signed_in);
        self.generation.fetch_add(1, Ordering::AcqRel);
        *signed_in = Some(transfers);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
