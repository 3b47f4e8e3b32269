//! Which AWS errors are worth retrying. Throttling, server errors, timeouts
//! and connection problems pass; wrong credentials, missing permissions,
//! missing buckets/streams and a wrong region do not, so they are `Fatal`
//! (the engine dead-letters the chunk at once) with a message saying what
//! to fix.

use fuwa_api::OutputError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Retryable,
    Fatal,
}

impl Class {
    pub fn error(self, msg: String) -> OutputError {
        match self {
            Class::Retryable => OutputError::Retryable(msg),
            Class::Fatal => OutputError::Fatal(msg),
        }
    }
}

/// Error codes that pass with time (throttling, transient server trouble,
/// expired temporary credentials that the provider refreshes).
const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
    "RequestTimeTooSkewed",
    "ExpiredToken",
    "ExpiredTokenException",
    "TokenRefreshRequired",
    "IDPCommunicationError",
    "OperationAborted",
    // throttling under other names (HTTP 400, so the status alone would
    // make them fatal and dead-letter chunks a moment's wait would deliver)
    "LimitExceededException",
    "KMS.ThrottlingException",
    "KMSThrottlingException",
    "BandwidthLimitExceeded",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "TransactionInProgressException",
    // a signature that expired in transit: the retry signs again
    "RequestExpired",
    "IDPCommunicationErrorException",
];

/// Error codes that no retry will fix.
const FATAL_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidToken",
    "NoSuchBucket",
    "ResourceNotFoundException",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
    "InvalidBucketName",
    "InvalidStorageClass",
    "InvalidArgument",
    "InvalidEncryptionAlgorithmError",
    "KMS.DisabledException",
    "KMS.NotFoundException",
    "KMS.InvalidStateException",
    "KMS.AccessDeniedException",
    "KMS.KMSInvalidStateException",
    "EntityTooLarge",
    "MethodNotAllowed",
    "NotImplemented",
    "InvalidRequest",
    "ValidationException",
];

/// Classifies by error code first, then by HTTP status: 5xx, 429 and 408
/// are retryable, other 4xx and 3xx (a redirect means the wrong region or
/// endpoint) are fatal; no status at all is retryable.
pub fn classify_code(code: Option<&str>, status: Option<u16>) -> Class {
    if let Some(c) = code {
        if RETRYABLE_CODES.contains(&c) {
            return Class::Retryable;
        }
        if FATAL_CODES.contains(&c) {
            return Class::Fatal;
        }
    }
    match status {
        Some(s) if s >= 500 || s == 429 || s == 408 => Class::Retryable,
        Some(s) if (300..500).contains(&s) => Class::Fatal,
        _ => Class::Retryable,
    }
}

/// What to fix for a fatal error, for codes every AWS service shares.
pub fn generic_hint(code: Option<&str>, status: u16) -> Option<String> {
    let h = match code {
        Some("AccessDenied" | "AccessDeniedException" | "AllAccessDisabled") => {
            "the credentials in use lack permission: check the IAM policy (and resource and KMS key policies)"
        }
        Some("InvalidAccessKeyId" | "InvalidClientTokenId" | "UnrecognizedClientException") => {
            "the access key is unknown to AWS: check the credentials the agent finds (env, profile, role)"
        }
        Some("SignatureDoesNotMatch" | "IncompleteSignature") => {
            "the secret key does not match the access key: check the credentials the agent finds"
        }
        Some("PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException") => {
            "wrong region or endpoint: set `region` to the region of the resource"
        }
        Some("InvalidToken" | "MissingAuthenticationToken") => {
            "the session token is invalid: check AWS_SESSION_TOKEN or the role setup"
        }
        _ if (300..400).contains(&status) => {
            "redirected: the resource is in another region; set `region` (or `endpoint`) accordingly"
        }
        _ if status == 403 => "forbidden: check the IAM policy of the credentials in use",
        _ => return None,
    };
    Some(h.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        for (code, status) in [
            (Some("SlowDown"), Some(503)),
            (Some("InternalError"), Some(500)),
            (Some("RequestTimeout"), Some(400)),
            (Some("ExpiredToken"), Some(400)),
            (Some("ThrottlingException"), Some(400)),
            (None, Some(502)),
            (None, Some(503)),
            (None, Some(429)),
            (Some("Whatever"), Some(500)),
            (Some("LimitExceededException"), Some(400)),
            (Some("KMS.ThrottlingException"), Some(400)),
            (Some("RequestExpired"), Some(400)),
            (None, None),
        ] {
            assert_eq!(
                classify_code(code, status),
                Class::Retryable,
                "{code:?} {status:?}"
            );
        }
    }

    #[test]
    fn permission_bucket_and_region_errors_are_fatal() {
        for (code, status) in [
            (Some("AccessDenied"), Some(403)),
            (Some("NoSuchBucket"), Some(404)),
            (Some("InvalidAccessKeyId"), Some(403)),
            (Some("SignatureDoesNotMatch"), Some(403)),
            (Some("PermanentRedirect"), Some(301)),
            (Some("AuthorizationHeaderMalformed"), Some(400)),
            (Some("KMS.NotFoundException"), Some(400)),
            (None, Some(301)),
            (None, Some(403)),
            (None, Some(404)),
            // client errors no retry fixes: a bad record, a too-big body
            (Some("InvalidArgumentException"), Some(400)),
            (Some("KeyTooLongError"), Some(400)),
            (None, Some(413)),
            (None, Some(400)),
        ] {
            assert_eq!(
                classify_code(code, status),
                Class::Fatal,
                "{code:?} {status:?}"
            );
        }
    }

    #[test]
    fn fatal_errors_say_what_to_fix() {
        assert!(generic_hint(Some("PermanentRedirect"), 301)
            .unwrap()
            .contains("region"));
        assert!(generic_hint(Some("AccessDenied"), 403)
            .unwrap()
            .contains("IAM"));
        assert!(generic_hint(None, 301).unwrap().contains("region"));
        assert!(generic_hint(Some("NoSuchKey"), 404).is_none());
    }
}
