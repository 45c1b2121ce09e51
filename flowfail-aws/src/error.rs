//! Mapping the SDK's errors onto flowfail's [`Error`]: the kind, whether it is transient, and
//! the server's own code and message (never the rest of a body).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use flowfail_core::{Error, ErrorKind};

pub(crate) fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// The text between `<tag>` and `</tag>` in an XML error body.
fn xml_element<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = body[start..].find(&format!("</{tag}>"))?;
    Some(body[start..start + len].trim())
}

/// What the server said: its error code and message. When the SDK could not parse the body
/// (moto answers some JSON APIs in XML), the `Code` and `Message` elements of the raw body;
/// nothing else of a body is ever taken, since the rest can echo request details.
fn server_words<E>(e: &SdkError<E, HttpResponse>) -> (String, String)
where
    E: ProvideErrorMetadata,
{
    let (mut code, mut message) = match e {
        SdkError::ServiceError(se) => (
            se.err().code().unwrap_or("").to_owned(),
            se.err().message().unwrap_or("").to_owned(),
        ),
        _ => (String::new(), String::new()),
    };
    if let Some(body) = e
        .raw_response()
        .and_then(|r| r.body().bytes())
        .map(String::from_utf8_lossy)
    {
        if code.is_empty() {
            code = xml_element(&body, "Code").unwrap_or("").to_owned();
        }
        if message.is_empty() {
            message = xml_element(&body, "Message").unwrap_or("").to_owned();
        }
    }
    let code = if code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
        code
    } else {
        String::new()
    };
    (code, flowfail_core::model::sanitize(&message, 300))
}

/// `e` and its causes, `: `-separated, each said once (`dispatch failure: io error: …:
/// Connection refused (os error 111)`), without the debug dump of `DisplayErrorContext`.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}

pub(crate) fn sdk_err<E>(
    op: &'static str,
    backend: &'static str,
    e: SdkError<E, HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = status_of(&e);
    let (code, words) = server_words(&e);
    let by_code = if code.contains("NotFound") || code.starts_with("NoSuch") {
        Some((ErrorKind::NotFound, false))
    } else if code.contains("Throttl") || code == "SlowDown" || code.contains("LimitExceeded") {
        Some((ErrorKind::RateLimited, true))
    } else if code.contains("AccessDenied")
        || code.contains("Unauthorized")
        || code == "ExpiredToken"
        || code == "InvalidAccessKeyId"
        || code == "SignatureDoesNotMatch"
        || code == "UnrecognizedClientException"
    {
        Some((ErrorKind::PermissionDenied, false))
    } else {
        None
    };
    let (kind, transient) = match (&e, status) {
        _ if by_code.is_some() => by_code.unwrap_or((ErrorKind::Unexpected, false)),
        (SdkError::TimeoutError(_), _) => (ErrorKind::Timeout, true),
        (SdkError::DispatchFailure(_), _) => (ErrorKind::Unavailable, true),
        (SdkError::ConstructionFailure(_), _) => (ErrorKind::InvalidInput, false),
        (_, Some(404)) => (ErrorKind::NotFound, false),
        (_, Some(409 | 412)) => (ErrorKind::Conflict, false),
        (_, Some(401 | 403)) => (ErrorKind::PermissionDenied, false),
        (_, Some(429 | 503)) => (ErrorKind::RateLimited, true),
        (_, Some(500..=599)) => (ErrorKind::Unavailable, true),
        (SdkError::ResponseError(_), _) => (ErrorKind::Unavailable, true),
        _ => (ErrorKind::Unexpected, false),
    };
    let said = if words.is_empty() {
        String::new()
    } else {
        format!(": {words}")
    };
    let msg = match (status, code.as_str()) {
        (Some(s), "") => format!("HTTP {s}{said}"),
        (Some(s), c) => format!("HTTP {s} {c}{said}"),
        (None, _) => causes(&e),
    };
    Error::new(kind, msg)
        .with_operation(op)
        .with_backend(backend)
        .with_source(e)
        .transient_if(transient)
}

/// A failed GET: `NoSuchKey` (or a 404 without a code) is the object missing; anything else,
/// `NoSuchBucket` included, is the server's error with its code and message.
pub(crate) fn get_err(
    op: &'static str,
    what: &str,
    e: SdkError<aws_sdk_s3::operation::get_object::GetObjectError, HttpResponse>,
) -> Error {
    let code = e.as_service_error().and_then(|s| s.code());
    let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key())
        || (status_of(&e) == Some(404) && code.is_none_or(|c| c == "NoSuchKey"));
    if missing {
        return Error::not_found(format!("{what} not found"))
            .with_operation(op)
            .with_backend("s3");
    }
    sdk_err(op, "s3", e)
}
