//! TLS: the certificate and key named in the reg tree (`TlsCertificate.1`, `TlsKey.1`), loaded
//! into one rustls server configuration that every worker shares, and reloaded without a
//! restart when the settings name other files or the files change (a renewal). A certificate
//! that cannot be used (unreadable, not PEM, key not matching it, expired or not yet valid) is
//! logged with its path and why, and the configuration in force is kept. rustls speaks TLS 1.2
//! and 1.3 only.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tracing::{error, info};

use crate::config::{Settings, SharedSettings};

/// How often the refresher looks at the settings and the files.
const REFRESH_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: no PEM certificate in it ({reason})")]
    NoCertificate { path: PathBuf, reason: String },
    #[error("{path}: no PEM private key in it ({reason})")]
    NoKey { path: PathBuf, reason: String },
    #[error("{path}: not a certificate hato can read: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: the certificate expired on {when}")]
    Expired { path: PathBuf, when: String },
    #[error("{path}: the certificate is not valid before {when}")]
    NotYetValid { path: PathBuf, when: String },
    #[error("{cert} and {key} do not go together: {source}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// Which files (and which versions of them) the configuration in force came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    cert: PathBuf,
    key: PathBuf,
    stamps: [Option<(SystemTime, u64)>; 2],
}

impl Source {
    fn of(cert: PathBuf, key: PathBuf) -> Source {
        let stamp = |p: &Path| {
            fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        let stamps = [stamp(&cert), stamp(&key)];
        Source { cert, key, stamps }
    }
}

/// The TLS configuration every worker uses; `None` inside while TLS is off or has never loaded.
pub struct Tls {
    spool: PathBuf,
    current: ArcSwapOption<ServerConfig>,
    /// What was last tried (loaded or refused), so a bad file is reported once, not every tick.
    tried: Mutex<Option<Source>>,
}

impl Tls {
    /// Loads the certificate the settings name (reporting a problem, not failing: TLS then
    /// stays off until the files are fixed).
    pub fn new(spool: &Path, settings: &Settings) -> Tls {
        let tls = Tls {
            spool: spool.to_path_buf(),
            current: ArcSwapOption::empty(),
            tried: Mutex::new(None),
        };
        tls.refresh(settings);
        tls
    }

    /// Whether the settings ask for TLS (a certificate and a key are named).
    pub fn configured(&self, settings: &Settings) -> bool {
        settings.tls_paths(&self.spool).is_some()
    }

    /// Whether TLS is on (cheap: one atomic load).
    pub fn available(&self) -> bool {
        self.current.load().is_some()
    }

    /// The configuration for new handshakes, if TLS is on.
    pub fn config(&self) -> Option<Arc<ServerConfig>> {
        self.current.load_full()
    }

    /// Reloads if the settings name other files or the files changed since the last try.
    pub fn refresh(&self, settings: &Settings) {
        let Some((cert, key)) = settings.tls_paths(&self.spool) else {
            if self.current.load().is_some() {
                info!("TLS is off (TlsCertificate.1 or TlsKey.1 is empty)");
            }
            self.current.store(None);
            *self.tried.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return;
        };
        let source = Source::of(cert, key);
        let mut tried = self.tried.lock().unwrap_or_else(|e| e.into_inner());
        if tried.as_ref() == Some(&source) {
            return;
        }
        match load(&source.cert, &source.key) {
            Ok(config) => {
                info!("TLS certificate loaded from {}", source.cert.display());
                self.current.store(Some(Arc::new(config)));
            }
            Err(e) => {
                let kept = if self.current.load().is_some() {
                    "the certificate in force is kept"
                } else {
                    "TLS stays off until this is fixed"
                };
                error!("TLS: {e}; {kept}");
            }
        }
        *tried = Some(source);
    }

    /// Starts the thread that refreshes every few seconds (file I/O stays off the workers).
    pub fn spawn_refresher(self: &Arc<Tls>, settings: SharedSettings) -> io::Result<()> {
        let tls = self.clone();
        thread::Builder::new()
            .name("hato-tls".into())
            .spawn(move || {
                loop {
                    thread::sleep(REFRESH_EVERY);
                    tls.refresh(&settings.load());
                }
            })
            .map(drop)
    }
}

/// Reads and checks the files; builds the rustls configuration.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<ServerConfig, TlsError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
            reason: "the file holds no CERTIFICATE block".into(),
        });
    };
    check_validity(cert_path, leaf)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: key_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|source| TlsError::Mismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            source,
        })
}

/// Refuses a leaf certificate outside its validity period: clients would refuse it anyway,
/// with an error far from the cause.
fn check_validity(path: &Path, leaf: &CertificateDer<'_>) -> Result<(), TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| {
        TlsError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    let validity = cert.validity();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if now > validity.not_after.timestamp() {
        return Err(TlsError::Expired {
            path: path.to_path_buf(),
            when: validity.not_after.to_string(),
        });
    }
    if now < validity.not_before.timestamp() {
        return Err(TlsError::NotYetValid {
            path: path.to_path_buf(),
            when: validity.not_before.to_string(),
        });
    }
    Ok(())
}
