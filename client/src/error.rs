//! The client's error type.

use kafka_protocol::ResponseError;

/// Everything that can go wrong in `sluice-client`. Messages name the broker, topic and
/// partition involved so they can be shown to a user as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A TCP or socket failure talking to a broker.
    #[error("broker {broker}: {source}")]
    Io {
        /// The broker's address.
        broker: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {error} ({})", error.code())]
    Kafka {
        /// The Kafka error.
        error: ResponseError,
        /// What was being done: the topic, partition or group involved.
        context: String,
    },
    /// The broker sent bytes that do not decode, or closed the connection mid-answer.
    #[error("broker {broker}: {message}")]
    Protocol {
        /// The broker's address.
        broker: String,
        /// What was wrong.
        message: String,
    },
    /// The broker does not support any version of an API this client needs.
    #[error("broker {broker} does not support {api} versions {min}..={max}")]
    Unsupported {
        /// The broker's address.
        broker: String,
        /// The API's name.
        api: &'static str,
        /// Lowest version this client speaks.
        min: i16,
        /// Highest version this client speaks.
        max: i16,
    },
    /// No broker could be reached.
    #[error("no broker reachable (tried {tried})")]
    NoBroker {
        /// The addresses tried.
        tried: String,
    },
    /// A request did not complete in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The caller asked for something impossible (bad configuration, unknown topic, ...).
    #[error("{0}")]
    Invalid(String),
    /// A record batch could not be compressed or decompressed.
    #[error("{0}")]
    Codec(String),
    /// The producer or consumer was closed.
    #[error("the client was closed")]
    Closed,
}

impl Error {
    /// Builds [`Error::Kafka`] from a response's error code, or `None` for code 0.
    pub fn from_code(code: i16, context: impl FnOnce() -> String) -> Option<Error> {
        ResponseError::try_from_code(code).map(|error| Error::Kafka {
            error,
            context: context(),
        })
    }

    /// Whether trying again (after refreshing metadata) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { error, .. } => error.is_retriable(),
            Error::Io { .. } | Error::Timeout(_) | Error::NoBroker { .. } => true,
            Error::Protocol { .. } => true,
            _ => false,
        }
    }

    /// A copy of this error, for handing one failure to many waiters.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Io { broker, source } => Error::Io {
                broker: broker.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Kafka { error, context } => Error::Kafka {
                error: *error,
                context: context.clone(),
            },
            Error::Protocol { broker, message } => Error::Protocol {
                broker: broker.clone(),
                message: message.clone(),
            },
            Error::Unsupported {
                broker,
                api,
                min,
                max,
            } => Error::Unsupported {
                broker: broker.clone(),
                api,
                min: *min,
                max: *max,
            },
            Error::NoBroker { tried } => Error::NoBroker {
                tried: tried.clone(),
            },
            Error::Timeout(s) => Error::Timeout(s.clone()),
            Error::Invalid(s) => Error::Invalid(s.clone()),
            Error::Codec(s) => Error::Codec(s.clone()),
            Error::Closed => Error::Closed,
        }
    }

    /// The Kafka error, if the broker answered with one.
    pub fn kafka(&self) -> Option<ResponseError> {
        match self {
            Error::Kafka { error, .. } => Some(*error),
            _ => None,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turns a non-zero error code into `Err`.
pub(crate) fn check(code: i16, context: impl FnOnce() -> String) -> Result<()> {
    match Error::from_code(code, context) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
