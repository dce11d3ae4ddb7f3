//! The app's state: where its data lives, the sign-in, the settings, the transfer list and the
//! watched folders (both present while signed in), and the machine's policy, followed live.
//! Commands are thin calls into this and the engine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use valet_engine::policy::{LivePolicy, PolicyState, Setting, SignInMode, UploadRules};
use valet_engine::transfers::Transfers;
use valet_engine::{
    Engine, Journal, RateLimit, SecretStore, SecretString, Session, SignIn, SsoParams, SsoSignIn,
};

use crate::dto::{PolicyInfo, SessionInfo, Settings, UiError, WatchStatus};
use crate::{policy, settings};

/// Shared by every command (Tauri managed state).
pub struct AppState {
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    keyring: Arc<dyn SecretStore>,
    /// The person's own settings as saved, and whether they ever saved any; the settings in
    /// effect are these under the policy ([`policy::effective`]).
    user_settings: Mutex<(Settings, bool)>,
    /// The machine's policy, read again when it changes.
    policy: LivePolicy,
    /// The bandwidth limit every upload shares; the settings change its rate in place.
    limit: Arc<RateLimit>,
    signed_in: Mutex<Option<Transfers>>,
    /// Counts sign-ins, so that the UI pump notices a new transfer list.
    generation: AtomicU64,
    /// Why the saved sign-in did not work at the last check, for the sign-in screen.
    problem: Mutex<Option<String>>,
    /// The watched folders' watches (desktop only), running while signed in.
    #[cfg(desktop)]
    watches: crate::watching::Watches,
    /// A single sign-on waiting for the browser: the task that finishes it. A new one, or a
    /// cancel, ends it (and its loopback listener).
    sso: Mutex<Option<tauri::async_runtime::JoinHandle<()>>>,
}

impl AppState {
    /// The state for `data_dir`, signed in again silently when a sign-in was saved there.
    /// Must run inside the async runtime (the transfer list starts its uploads on it).
    pub fn open(
        data_dir: PathBuf,
        log_file: PathBuf,
        keyring: Arc<dyn SecretStore>,
    ) -> (Self, Option<UiError>) {
        let saved = data_dir.join(settings::SETTINGS_FILE).exists();
        let (settings, problem) = match settings::load(&data_dir) {
            Ok(s) => (s, None),
            Err(e) => (Settings::default(), Some(e)),
        };
        let policy = LivePolicy::start(valet_engine::policy::system_sources(), data_dir.clone());
        let state = Self {
            data_dir,
            log_file,
            keyring,
            user_settings: Mutex::new((settings, saved)),
            policy,
            limit: Arc::new(RateLimit::new(RateLimit::UNLIMITED)),
            signed_in: Mutex::new(None),
            generation: AtomicU64::new(0),
            problem: Mutex::new(None),
            #[cfg(desktop)]
            watches: crate::watching::Watches::default(),
            sso: Mutex::new(None),
        };
        state.apply_proxy();
        let restored = match Session::saved(&state.data_dir, state.keyring.clone()) {
            Ok(session) => match state
                .policy_state()
                .refuses_server(session.server().as_str())
            {
                Some(why) => {
                    tracing::warn!("{why}");
                    *lock(&state.problem) = Some(why);
                    None
                }
                None => state.start(session).err(),
            },
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
            policy: self.policy_info(),
        }
    }

    /// The policy in force now.
    pub fn policy_state(&self) -> PolicyState {
        self.policy.state()
    }

    /// The policy as the UI shows it.
    pub fn policy_info(&self) -> PolicyInfo {
        policy::info(&self.policy_state())
    }

    /// Changes as the policy is read again.
    pub fn policy_changes(&self) -> tokio::sync::watch::Receiver<PolicyState> {
        self.policy.subscribe()
    }

    /// Applies the policy in force now, without a restart: the proxy (for connections made
    /// from now on), the engine's rules, the settings in effect (parallel parts, the shared
    /// bandwidth limit) and the watched folders. Enrollment is [`AppState::enroll_if_managed`],
    /// called after this.
    pub fn apply_policy(&self) {
        let state = self.policy_state();
        match (&state.error, &state.origin) {
            (Some(e), Some(_)) => {
                tracing::warn!(error = %e, "policy broken; the last good one stays in force")
            }
            (Some(e), None) => tracing::warn!(error = %e, "policy broken; none is in force"),
            (None, Some(origin)) => tracing::info!(%origin, "policy in force"),
            (None, None) => tracing::info!("no policy"),
        }
        self.apply_proxy();
        self.apply_settings();
        self.leave_other_server();
    }

    /// Stops using a sign-in with a service the policy no longer allows (the organisation
    /// moved this computer); its uploads pause, and the sign-in screen (or enrollment with the
    /// new service) takes over.
    fn leave_other_server(&self) {
        let Some(transfers) = self.transfers_if_signed_in() else {
            return;
        };
        let server = transfers.engine().session().server().to_string();
        if let Some(why) = self.policy_state().refuses_server(&server) {
            tracing::warn!("{why}");
            self.sign_in_failed(why);
        }
    }

    /// Enrolls this computer when the policy says so (`sign_in.mode = "enrollment"`) and it
    /// has never been signed in here: the device signs itself in with the organisation's
    /// secret and the transfer list starts, as after a sign-in. A computer with a saved
    /// sign-in, even one that stopped working (a revoked device), is not enrolled again: the
    /// sign-in screen says what happened. `Ok(true)` when it enrolled now.
    pub async fn enroll_if_managed(&self) -> Result<bool, UiError> {
        let state = self.policy_state();
        let Some(p) = state.policy.as_deref() else {
            return Ok(false);
        };
        let (SignInMode::Enrollment, Some(server), Some(secret)) =
            (p.sign_in.mode, &p.server, &p.sign_in.enrollment_secret)
        else {
            return Ok(false);
        };
        // A saved sign-in with a service the policy no longer allows does not count: the
        // computer enrolls with the new one.
        let saved =
            SignIn::load(&self.data_dir)?.filter(|s| state.refuses_server(&s.server).is_none());
        if self.transfers_if_signed_in().is_some() || saved.is_some() {
            return Ok(false);
        }
        let name = valet_engine::policy::device_name();
        tracing::info!(device = %name, "enrolling this computer with its organisation");
        let session = Session::enroll(
            server,
            SecretString::from(secret.clone()),
            &name,
            self.keyring.clone(),
            &self.data_dir,
        )
        .await?;
        tracing::info!(user = session.user().unwrap_or_default(), "enrolled");
        self.start(session)?;
        *lock(&self.problem) = None;
        Ok(true)
    }

    fn apply_proxy(&self) {
        let state = self.policy_state();
        let proxy = state.policy.as_deref().and_then(|p| p.proxy.as_deref());
        valet_engine::set_proxy(proxy.and_then(|p| p.parse().ok()));
    }

    /// Signs in with a password; the refresh token goes to the OS keyring.
    pub async fn sign_in(
        &self,
        server: &str,
        user: &str,
        password: SecretString,
    ) -> Result<SessionInfo, UiError> {
        self.refuse_other_server(server)?;
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

    /// A server the policy does not allow (`server` locked to another) is refused.
    fn refuse_other_server(&self, server: &str) -> Result<(), UiError> {
        let state = self.policy_state();
        if let Some(theirs) = state.policy.as_deref().and_then(|p| p.server.as_deref())
            && state.is_locked(Setting::Server)
            && theirs.trim_end_matches('/') != server.trim().trim_end_matches('/')
        {
            return Err(UiError::new(
                "locked",
                format!(
                    "this computer signs in to {theirs} only (`server` is locked by the policy {})",
                    state.origin.as_deref().unwrap_or("in force")
                ),
            ));
        }
        Ok(())
    }

    /// Prepares a single sign-on with `server`: the provider the policy names
    /// (`sign_in.sso`), else the one the service names. The caller opens the browser and
    /// hands the rest to [`Self::await_sso`].
    pub async fn begin_sso(&self, server: &str) -> Result<SsoSignIn, UiError> {
        self.refuse_other_server(server)?;
        let server = server.trim();
        if server.is_empty() {
            return Err(UiError::new("invalid", "Enter the service address."));
        }
        let sso = self
            .policy_state()
            .policy
            .as_deref()
            .and_then(|p| p.sign_in.sso.as_ref())
            .map(SsoParams::from);
        let params = match sso {
            Some(params) => params,
            None => SsoParams::from_service(server).await?,
        };
        Ok(SsoSignIn::start(server, &params, self.keyring.clone(), &self.data_dir).await?)
    }

    /// Waits for the browser's answer to `sign_in`, then starts the transfer list as after a
    /// password sign-in.
    pub async fn await_sso(&self, sign_in: SsoSignIn) -> Result<(), UiError> {
        let session = sign_in.finish(valet_engine::SSO_TIMEOUT).await?;
        tracing::info!(
            user = session.user().unwrap_or_default(),
            "signed in through single sign-on"
        );
        self.start(session)?;
        *lock(&self.problem) = None;
        Ok(())
    }

    /// Keeps `task` as the single sign-on under way, ending the one before.
    pub fn set_sso_task(&self, task: tauri::async_runtime::JoinHandle<()>) {
        if let Some(before) = lock(&self.sso).replace(task) {
            before.abort();
        }
    }

    /// Ends the single sign-on under way; whether there was one.
    pub fn cancel_sso(&self) -> bool {
        lock(&self.sso).take().is_some_and(|task| {
            task.abort();
            true
        })
    }

    /// Pauses every upload (they resume after the next sign-in), revokes the sign-in on the
    /// service and forgets it here.
    pub async fn sign_out(&self) -> Result<(), UiError> {
        policy::refuse_if_locked(&self.policy_state(), Setting::SignOut)?;
        self.stop_watching();
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
        self.stop_watching();
        if let Some(transfers) = lock(&self.signed_in).take() {
            transfers.pause_all();
        }
        *lock(&self.problem) = Some(problem);
    }

    /// The settings in effect: the person's under the policy.
    pub fn settings(&self) -> Settings {
        let (user, saved) = lock(&self.user_settings).clone();
        policy::effective(&user, saved, self.policy_state().policy.as_deref())
    }

    /// Checks, saves and applies new settings (the settings in effect, as the settings screen
    /// shows them): the bandwidth limit at once, and watched folders started, stopped or
    /// restarted as they changed. A locked setting asked to change is refused (`locked`). A
    /// folder newly added must exist (a typing slip is caught here); one already in the list
    /// may be missing for a while.
    pub fn set_settings(&self, new: Settings) -> Result<Settings, UiError> {
        let before = lock(&self.user_settings).0.clone();
        let new = policy::user_part(
            settings::tidy(new),
            &self.settings(),
            &before,
            &self.policy_state(),
        )?;
        for folder in &new.watched_folders {
            let added = !before.watched_folders.iter().any(|f| f.path == folder.path);
            if added && !std::path::Path::new(&folder.path).is_dir() {
                return Err(UiError::new(
                    "invalid",
                    format!("{} is not a folder that can be read", folder.path),
                ));
            }
        }
        settings::save(&self.data_dir, &new)?;
        *lock(&self.user_settings) = (new, true);
        self.apply_settings();
        Ok(self.settings())
    }

    /// Puts the settings in effect and the policy's rules to work on the transfer list and
    /// the watches.
    fn apply_settings(&self) {
        let effective = self.settings();
        let signed_in = lock(&self.signed_in).clone();
        if let Some(transfers) = &signed_in {
            transfers.set_options(settings::transfer_options(&effective, &self.limit));
            let state = self.policy_state();
            transfers
                .engine()
                .set_rules(UploadRules::from_policy(state.policy.as_deref()));
        }
        #[cfg(desktop)]
        self.watches.apply(
            &self.watched(&effective),
            signed_in.as_ref(),
            &self.data_dir,
        );
    }

    /// Every folder to watch: the policy's (always on), then the person's own.
    #[cfg(desktop)]
    fn watched(&self, effective: &Settings) -> Vec<crate::watching::Watched> {
        use crate::watching::Watched;
        let state = self.policy_state();
        let mut all: Vec<Watched> = policy::managed_folders(state.policy.as_deref())
            .into_iter()
            .map(|(folder, hidden)| Watched { folder, hidden })
            .collect();
        for mine in &effective.watched_folders {
            // A folder of the person's inside one of the policy's (saved before the policy
            // came) would send files twice: the policy's wins.
            let path = std::path::Path::new(&mine.path);
            if !all.iter().any(|w| {
                path.starts_with(&w.folder.path)
                    || std::path::Path::new(&w.folder.path).starts_with(path)
            }) {
                all.push(Watched::own(mine.clone()));
            }
        }
        all
    }

    /// The watched folders' states.
    pub fn watch_statuses(&self) -> Vec<WatchStatus> {
        #[cfg(desktop)]
        return self.watches.statuses();
        #[cfg(mobile)]
        Vec::new()
    }

    /// Changes at every change of a watched folder's state.
    pub fn watch_version(&self) -> u64 {
        #[cfg(desktop)]
        return self.watches.version();
        #[cfg(mobile)]
        0
    }

    fn stop_watching(&self) {
        #[cfg(desktop)]
        self.watches.stop_all();
    }

    /// Starts the transfer list over `session` and lists the uploads an earlier run left
    /// unfinished, so they continue.
    fn start(&self, session: Session) -> Result<(), UiError> {
        let journal = Journal::open_in(&self.data_dir)?;
        let options = settings::transfer_options(&self.settings(), &self.limit);
        let engine = Engine::new(session, journal);
        engine.set_rules(UploadRules::from_policy(
            self.policy_state().policy.as_deref(),
        ));
        let transfers = Transfers::new(engine, options);
        let restoring = transfers.clone();
        tauri::async_runtime::spawn(async move {
            match restoring.restore().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(uploads = n, "continuing unfinished uploads"),
                Err(e) => tracing::warn!(error = %e, "could not read unfinished uploads"),
            }
        });
        // A new list: watches still running over an older one (if any) stop first.
        self.stop_watching();
        #[cfg(desktop)]
        self.watches.apply(
            &self.watched(&self.settings()),
            Some(&transfers),
            &self.data_dir,
        );
        let mut signed_in = lock(&self.signed_in);
        self.generation.fetch_add(1, Ordering::AcqRel);
        *signed_in = Some(transfers);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
