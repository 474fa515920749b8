//! HTTPS: the certificate chain and private key given by `LATCHKEY_TLS_CERT` and
//! `LATCHKEY_TLS_KEY` (PEM files), loaded once at start into a rustls server
//! configuration (ring, TLS 1.2 and 1.3, HTTP/1.1 by ALPN).
//!
//! An error names its variable and file, never the key file's content: a key that cannot
//! be read is described by what it is not, not by what the parser saw.

use std::{fmt, fs, io::BufReader, path::Path, sync::Arc};

use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer},
    },
};

use crate::config::ConfigError;

/// Certificates and keys far larger than any real chain are refused unread.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The server side of TLS, ready for the accept loop.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
    /// Where the chain came from, for `Debug` and logs.
    cert_path: String,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("cert", &self.cert_path).finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS from the two variables' values: both or neither.
    pub fn from_files(cert: Option<&str>, key: Option<&str>) -> Result<Option<Self>, ConfigError> {
        let blank = |value: Option<&str>| value.map(str::trim).filter(|value| !value.is_empty()).map(str::to_owned);
        match (blank(cert), blank(key)) {
            (None, None) => Ok(None),
            (Some(_), None) => {
                Err(invalid("LATCHKEY_TLS_KEY", "is not set, but LATCHKEY_TLS_CERT is: HTTPS needs both files"))
            }
            (None, Some(_)) => {
                Err(invalid("LATCHKEY_TLS_CERT", "is not set, but LATCHKEY_TLS_KEY is: HTTPS needs both files"))
            }
            (Some(cert), Some(key)) => Self::load(&cert, &key).map(Some),
        }
    }

    fn load(cert_path: &str, key_path: &str) -> Result<Self, ConfigError> {
        let chain = read_chain(cert_path)?;
        let key = read_key(key_path)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| invalid("LATCHKEY_TLS_CERT", format!("cannot set up TLS: {err}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|err| key_refused(key_path, &err))?;
        // latchkey speaks HTTP/1.1 only; saying so keeps clients from trying HTTP/2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { config: Arc::new(config), cert_path: cert_path.to_owned() })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }
}

fn invalid(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError { variable, reason: reason.into() }
}

/// A PEM file's bytes, or an error naming `variable`; the read error is the operating
/// system's (not found, permission denied), never the content.
fn read_pem(variable: &'static str, path: &str) -> Result<Vec<u8>, ConfigError> {
    let cannot = |err: std::io::Error| invalid(variable, format!("cannot read {path}: {err}"));
    let size = fs::metadata(Path::new(path)).map_err(cannot)?.len();
    if size > MAX_PEM_BYTES {
        return Err(invalid(variable, format!("{path} is larger than {MAX_PEM_BYTES} bytes; it is not a PEM file")));
    }
    fs::read(path).map_err(cannot)
}

fn read_chain(path: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read_pem("LATCHKEY_TLS_CERT", path)?;
    let chain = rustls_pemfile::certs(&mut BufReader::new(pem.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid("LATCHKEY_TLS_CERT", format!("{path} is not valid PEM: {err}")))?;
    if chain.is_empty() {
        return Err(invalid("LATCHKEY_TLS_CERT", format!("{path} holds no PEM certificate")));
    }
    Ok(chain)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let pem = read_pem("LATCHKEY_TLS_KEY", path)?;
    // The parser's own message may quote what it read: it is dropped.
    match rustls_pemfile::private_key(&mut BufReader::new(pem.as_slice())) {
        Ok(Some(key)) => Ok(key),
        Ok(None) | Err(_) => Err(invalid(
            "LATCHKEY_TLS_KEY",
            format!("{path} holds no readable PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)"),
        )),
    }
}

/// Why rustls refused the pair: a key that does not belong to the certificate, or one it
/// cannot use. rustls's errors describe kinds, not bytes.
fn key_refused(key_path: &str, err: &rustls::Error) -> ConfigError {
    match err {
        rustls::Error::InconsistentKeys(_) => invalid(
            "LATCHKEY_TLS_KEY",
            format!("{key_path} is not the private key of the first certificate in LATCHKEY_TLS_CERT"),
        ),
        rustls::Error::General(_) => {
            invalid("LATCHKEY_TLS_KEY", format!("{key_path} holds a private key of a kind TLS cannot use"))
        }
        _ => invalid("LATCHKEY_TLS_CERT", format!("cannot use the certificate with {key_path}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Self { dir: tempfile::tempdir().unwrap() }
        }

        fn write(&self, name: &str, contents: &str) -> String {
            let path = self.dir.path().join(name);
            fs::File::create(&path).unwrap().write_all(contents.as_bytes()).unwrap();
            path.display().to_string()
        }

        /// A self-signed pair for 127.0.0.1: (cert path, key path).
        fn pair(&self, prefix: &str) -> (String, String) {
            let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
            (
                self.write(&format!("{prefix}.crt"), &pair.cert.pem()),
                self.write(&format!("{prefix}.key"), &pair.signing_key.serialize_pem()),
            )
        }
    }

    fn refused(cert: Option<&str>, key: Option<&str>) -> ConfigError {
        Tls::from_files(cert, key).unwrap_err()
    }

    #[test]
    fn neither_file_means_plain_http_and_a_valid_pair_loads() {
        assert!(Tls::from_files(None, None).unwrap().is_none());
        assert!(Tls::from_files(Some(" "), Some("")).unwrap().is_none());
        let files = Files::new();
        let (cert, key) = files.pair("server");
        let tls = Tls::from_files(Some(&cert), Some(&key)).unwrap().unwrap();
        assert!(format!("{tls:?}").contains("server.crt"));
        assert_eq!(tls.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn one_file_without_the_other_names_the_missing_variable() {
        let files = Files::new();
        let (cert, key) = files.pair("server");
        assert_eq!(refused(Some(&cert), None).variable, "LATCHKEY_TLS_KEY");
        assert_eq!(refused(None, Some(&key)).variable, "LATCHKEY_TLS_CERT");
    }

    #[test]
    fn missing_or_invalid_files_name_their_variable_and_never_show_the_key() {
        let files = Files::new();
        let (cert, key) = files.pair("server");
        let (_, other_key) = files.pair("other");
        let missing = files.dir.path().join("nowhere.pem").display().to_string();
        let secret = "hunter2-do-not-print-me";
        let garbage_key = files
            .write("garbage.key", &format!("-----BEGIN PRIVATE KEY-----\n{secret}!!\n-----END PRIVATE KEY-----\n"));
        let text_key = files.write("text.key", secret);
        let not_a_cert = files.write("notes.txt", "just some notes\n");

        let cases: [(&str, &str, &str, &str); 8] = [
            (&missing, &key, "LATCHKEY_TLS_CERT", "cannot read"),
            (&cert, &missing, "LATCHKEY_TLS_KEY", "cannot read"),
            (&not_a_cert, &key, "LATCHKEY_TLS_CERT", "no PEM certificate"),
            (&key, &key, "LATCHKEY_TLS_CERT", "no PEM certificate"),
            (&cert, &garbage_key, "LATCHKEY_TLS_KEY", "no readable PEM private key"),
            (&cert, &text_key, "LATCHKEY_TLS_KEY", "no readable PEM private key"),
            (&cert, &cert, "LATCHKEY_TLS_KEY", "no readable PEM private key"),
            (&cert, &other_key, "LATCHKEY_TLS_KEY", "not the private key of the first certificate"),
        ];
        for (cert, key, variable, reason) in cases {
            let err = refused(Some(cert), Some(key));
            let text = err.to_string();
            assert_eq!(err.variable, variable, "{text}");
            assert!(text.contains(variable) && text.contains(reason), "{text}");
            assert!(!text.contains(secret) && !text.contains("hunter2"), "the key's content leaked: {text}");
            assert!(!text.contains("BEGIN"), "{text}");
        }
    }
}
