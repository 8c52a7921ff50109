//! Certificates made for one test: two unrelated CAs, server certificates for `localhost` and
//! 127.0.0.1 from each, and a client certificate from each. PEM files go to a directory of the
//! test's own, removed when the [`Pki`] is dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority: its certificate and the key it signs with.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    cert: Certificate,
}

/// A certificate and its private key.
pub struct Identity {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { params, key, cert }
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA.
    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> Identity {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.extended_key_usages = vec![purpose];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        Identity { cert, key }
    }

    /// A client certificate with `common_name` (if any) and DNS Subject Alternative Names
    /// `sans`, signed by this CA.
    pub fn client(&self, common_name: Option<&str>, sans: &[&str]) -> Identity {
        let sans: Vec<String> = sans.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "nanomq tests");
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        Identity { cert, key }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Identity {
        self.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// The CA certificate, for a client's trust store.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }
}

impl Identity {
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.der().clone()]
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}

/// Two unrelated CAs and their certificates, with the files a listener config names:
/// `ca.pem` (the first CA), `server.crt` and `server.key` (a server certificate from it).
pub struct Pki {
    dir: PathBuf,
    /// Issues the server certificate and the trusted client certificate.
    pub ca: Ca,
    /// Unrelated to `ca`: its certificates must be refused.
    pub other_ca: Ca,
    /// A client certificate from `ca`.
    pub client: Identity,
    /// A client certificate from `other_ca`.
    pub stranger: Identity,
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

impl Pki {
    pub fn new() -> Pki {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "nanomq-transports-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new("nanomq test CA");
        let other_ca = Ca::new("unrelated test CA");
        let client = ca.issue(&["client"], ExtendedKeyUsagePurpose::ClientAuth);
        let stranger = other_ca.issue(&["stranger"], ExtendedKeyUsagePurpose::ClientAuth);
        let pki = Pki {
            dir,
            ca,
            other_ca,
            client,
            stranger,
        };
        pki.write("ca.pem", &pki.ca.pem());
        pki.install_server(&pki.ca.server());
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.path(name), contents).unwrap();
    }

    /// Writes `server` over `server.crt` and `server.key`.
    pub fn install_server(&self, server: &Identity) {
        self.write("server.crt", &server.cert.pem());
        self.write("server.key", &server.key.serialize_pem());
    }

    /// A `[listeners.tls]` table with `server.crt`, `server.key` and any `extra` keys.
    pub fn tls_table(&self, extra: &str) -> String {
        format!(
            "[listeners.tls]\ncert = {}\nkey = {}\n{extra}\n",
            toml_path(&self.path("server.crt")),
            toml_path(&self.path("server.key")),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A path as a TOML string.
pub fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}
