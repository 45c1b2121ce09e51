//! One line of advice for the common mistakes: a table not on the search path, nothing
//! listening at the URL, a permission AWS denied, a key a vendor refused.

use flowfail_core::ErrorKind;
use flowfail_core::model::redact_url;

use crate::failure::{Failure, connection_refused, object_missing};

/// What the command was pointed at, for advice that names the flag to change. URLs are kept
/// with their passwords redacted.
#[derive(Debug, Default, Clone)]
pub(crate) struct Context {
    pub(crate) pg_url: Option<String>,
    pub(crate) pg_schema: Option<String>,
    pub(crate) aws_endpoint: Option<String>,
    pub(crate) s3_bucket: Option<String>,
    pub(crate) s3_key: Option<String>,
    pub(crate) log_group: Option<String>,
    /// The variable holding the key of an HTTP API (`ANTHROPIC_API_KEY`).
    pub(crate) key_var: Option<&'static str>,
    /// The flag setting the HTTP API's URL (`--anthropic-url`).
    pub(crate) url_flag: Option<&'static str>,
}

impl Context {
    /// A TaskDB at `url`, its table in `schema` (or on the search path).
    pub(crate) fn pg(url: &str, schema: Option<&str>) -> Self {
        Context {
            pg_url: Some(redact_url(url)),
            pg_schema: schema.map(str::to_owned),
            ..Context::default()
        }
    }
}

/// `f` with its advice, when its cause is a common mistake.
pub(crate) fn explained(f: Failure, ctx: &Context) -> Failure {
    let a = advice(&f, ctx);
    f.advise(a)
}

/// The advice for `f`, if its cause is a common mistake.
pub(crate) fn advice(f: &Failure, ctx: &Context) -> Option<String> {
    if object_missing(f) {
        return None; // "bundle t-1 not found" says it all
    }
    let be = f.backend_error()?;
    match be.backend() {
        "postgres" => pg_advice(f, ctx),
        "s3" => s3_advice(f, be, ctx),
        "cloudwatch" => logs_advice(f, be, ctx),
        "http" => http_advice(f, be, ctx),
        _ => None,
    }
}

fn pg_advice(f: &Failure, ctx: &Context) -> Option<String> {
    let url = ctx.pg_url.as_deref().unwrap_or("the TaskDB URL");
    let Some(state) = flowfail_pg::sql_state(f.error()) else {
        return connection_refused(f.error()).then(|| {
            format!(
                "nothing answers at {url}: start PostgreSQL there, or point --pg (or FLOWFAIL_PG_URL) at the TaskDB"
            )
        });
    };
    Some(match (state, ctx.pg_schema.as_deref()) {
        ("42P01", None) => "the TaskDB table is not on the search path: pass --schema SCHEMA when it lives in a schema of its own (embedded: map it with flowfail_pg::TaskTable)".into(),
        ("42P01", Some(s)) => format!(
            "there is no such table in schema {s}: check --schema (the table is `tasks` unless mapped with flowfail_pg::TaskTable)"
        ),
        ("42703", _) => "the table lacks a column the TaskDB has: map the columns with flowfail_pg::TaskColumns".into(),
        ("3D000", _) => format!("the database named in {url} does not exist: check --pg (or FLOWFAIL_PG_URL)"),
        ("28P01" | "28000", _) => format!(
            "PostgreSQL refused the login: check the user and password of {url} (--pg or FLOWFAIL_PG_URL) and pg_hba.conf"
        ),
        ("42501", _) => "the PostgreSQL user lacks a privilege on the TaskDB table: GRANT SELECT, UPDATE on it to that user".into(),
        _ => return None,
    })
}

/// Advice for an AWS endpoint that does not answer.
fn endpoint_advice(ctx: &Context) -> String {
    match &ctx.aws_endpoint {
        Some(e) => format!(
            "nothing answers at the AWS endpoint {e}: check --aws-endpoint (or FLOWFAIL_AWS_ENDPOINT)"
        ),
        None => "AWS could not be reached: check the network and AWS_REGION".into(),
    }
}

/// Whether AWS refused the credentials themselves rather than a permission.
fn bad_credentials(be: &flowfail_core::Error) -> bool {
    [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "UnrecognizedClient",
        "InvalidClientTokenId",
    ]
    .iter()
    .any(|c| be.message().contains(c))
}

const CREDENTIALS: &str = "AWS did not accept the credentials: check AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and the clock, for signatures)";

fn s3_advice(f: &Failure, be: &flowfail_core::Error, ctx: &Context) -> Option<String> {
    let bucket = ctx.s3_bucket.as_deref().unwrap_or("BUCKET");
    let key = ctx.s3_key.as_deref().unwrap_or("*");
    match be.kind() {
        ErrorKind::PermissionDenied if bad_credentials(be) => Some(CREDENTIALS.into()),
        ErrorKind::PermissionDenied => {
            let (perm, object) = match be.operation() {
                "bundle.put_archive" => ("s3:PutObject", "archive/*".to_owned()),
                "bundle.get_archive" => ("s3:GetObject", "archive/*".to_owned()),
                "bundle.put_if_version" => ("s3:PutObject", key.to_owned()),
                _ => ("s3:GetObject", key.to_owned()),
            };
            Some(format!(
                "AWS denied {}: the credentials need {perm} on arn:aws:s3:::{bucket}/{object} (prune-context reads and writes the bundle and archive/*: s3:GetObject and s3:PutObject)",
                be.operation()
            ))
        }
        ErrorKind::NotFound => Some(format!(
            "check --s3-bucket {bucket} and the region (AWS_REGION): the bucket is not there"
        )),
        ErrorKind::InvalidInput => Some(
            "the request could not be built: set AWS_REGION and credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into(),
        ),
        _ if connection_refused(f.error()) => Some(endpoint_advice(ctx)),
        _ => None,
    }
}

fn logs_advice(f: &Failure, be: &flowfail_core::Error, ctx: &Context) -> Option<String> {
    let group = ctx.log_group.as_deref().unwrap_or("GROUP");
    match be.kind() {
        ErrorKind::PermissionDenied if bad_credentials(be) => Some(CREDENTIALS.into()),
        ErrorKind::PermissionDenied => Some(format!(
            "AWS denied {}: the credentials need logs:FilterLogEvents on arn:aws:logs:REGION:ACCOUNT:log-group:{group}:*",
            be.operation()
        )),
        ErrorKind::NotFound => Some(format!(
            "there is no log group {group} in this region: check --cloudwatch-log-group and AWS_REGION"
        )),
        ErrorKind::InvalidInput => Some(
            "the request could not be built: set AWS_REGION and credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into(),
        ),
        _ if connection_refused(f.error()) => Some(endpoint_advice(ctx)),
        _ => None,
    }
}

fn http_advice(f: &Failure, be: &flowfail_core::Error, ctx: &Context) -> Option<String> {
    let flag = ctx.url_flag.unwrap_or("the URL");
    match be.kind() {
        ErrorKind::PermissionDenied => Some(match ctx.key_var {
            Some(var) => format!(
                "the API refused the key in {var}: set it to a valid key for the API at {flag}"
            ),
            None => format!("the server refused the request: check {flag}"),
        }),
        ErrorKind::NotFound => Some(format!(
            "nothing at that path: check that {flag} is the API's base URL"
        )),
        _ if connection_refused(f.error()) => Some(format!("nothing answers there: check {flag}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_advice() {
        assert_eq!(
            redact_url("postgres://ff:s3cret@db:5432/x"),
            "postgres://ff:***@db:5432/x"
        );
        assert_eq!(
            redact_url("host=db password=s3cret user=x"),
            "host=db password=*** user=x"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
    }
}
