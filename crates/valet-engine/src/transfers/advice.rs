//! What a person should do about a failed upload, by the error's stable code
//! ([`crate::Error::code`]). The error's own message says what happened; this says what next.

/// The next step for an upload that failed with `code`, in plain words.
pub fn advice(code: &str) -> &'static str {
    match code {
        "rate_limited" => {
            "Too many sign-in attempts failed, so the service waits before taking another. \
             Wait the time the message gives, then sign in again with the right password."
        }
        "network" | "retries_exhausted" => {
            "The valet service or the store could not be reached. Check the network \
             connection, then press Retry: parts already stored are kept."
        }
        "store_unavailable" | "internal" => {
            "The storage service is having trouble. Press Retry in a while: parts already \
             stored are kept."
        }
        "source_changed" => {
            "The file changed while it was being uploaded, so this copy was not kept. Press \
             Retry to upload the file as it is now."
        }
        "source_unreadable" | "not_a_file" => {
            "The file could not be read: it was moved, deleted, or you lack permission. Check \
             the file, then press Retry."
        }
        "not_signed_in"
        | "sign_in_expired"
        | "unauthenticated"
        | "token_expired"
        | "token_revoked"
        | "invalid_credentials" => {
            "Your sign-in ended. Sign in again, then press Retry: parts already stored are kept."
        }
        "device_revoked" => {
            "Your organisation withdrew this computer's access. Ask your IT administrator; \
             nothing more is sent from here until they let it back in."
        }
        "keyring_unavailable" | "keyring" => {
            "The system keyring, where your sign-in is kept, is locked or missing. Unlock it \
             (or sign in again), then press Retry."
        }
        "quota_exceeded" => {
            "Your storage quota is full. Remove older uploads or ask your administrator for \
             more space."
        }
        "too_large" => "The file is larger than this service accepts. Ask your administrator.",
        "content_type_not_allowed" => {
            "The service does not accept this kind of file. Ask your administrator which \
             types are allowed."
        }
        "verification_failed" | "parts_mismatch" => {
            "The store's copy did not match the file, so it was not kept. Press Retry to \
             send it again."
        }
        "insecure_url" | "foreign_key_host" | "bad_url" | "bad_reply" => {
            "The service answered with something unsafe or broken, and nothing was sent to \
             it. Tell your administrator; exporting diagnostics (Help menu) helps them."
        }
        "journal" | "settings" => {
            "Valet Upload could not write to its data folder (is the disk full?). Free some \
             space, then press Retry."
        }
        "policy_refused" => {
            "Your organisation's policy on this computer does not allow this upload. Ask your \
             administrator if it should."
        }
        "cancelled" => "You cancelled this upload; nothing was kept. Press Retry to start over.",
        _ => {
            "Press Retry. If it keeps failing, export diagnostics (Help menu) and send them \
             to your administrator."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_and_service_code_has_specific_advice() {
        let codes = [
            "source_changed",
            "source_unreadable",
            "not_a_file",
            "bad_reply",
            "retries_exhausted",
            "network",
            "insecure_url",
            "foreign_key_host",
            "bad_url",
            "not_signed_in",
            "sign_in_expired",
            "keyring_unavailable",
            "keyring",
            "journal",
            "settings",
            "invalid_credentials",
            "unauthenticated",
            "token_expired",
            "token_revoked",
            "device_revoked",
            "rate_limited",
            "too_large",
            "quota_exceeded",
            "content_type_not_allowed",
            "parts_mismatch",
            "verification_failed",
            "store_unavailable",
            "internal",
            "cancelled",
            "policy_refused",
        ];
        let fallback = advice("something_new");
        for code in codes {
            assert_ne!(
                advice(code),
                fallback,
                "{code} falls back to the generic advice"
            );
        }
        assert!(fallback.contains("Retry"));
    }
}
