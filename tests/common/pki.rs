//! A throwaway certificate authority for the TLS tests: a CA made with rcgen, server
//! certificates for localhost signed by it, and a rustls client configuration that trusts it.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::{ClientConfig, RootCertStore};

/// A test CA, and a rustls client configuration trusting it.
pub struct Pki {
    pub ca: CertifiedIssuer<'static, KeyPair>,
    pub client: Arc<ClientConfig>,
}

/// A server certificate (PEM) with its key (PEM).
pub struct Leaf {
    pub cert: String,
    pub key: String,
    pub der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "hato test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        let key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).expect("CA as a root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Pki {
            ca,
            client: Arc::new(client),
        }
    }

    /// A certificate for localhost and 127.0.0.1, valid from `from` until `until` (y, m, d).
    pub fn leaf(&self, from: (i32, u8, u8), until: (i32, u8, u8)) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &*self.ca).expect("sign the leaf");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    pub fn valid(&self) -> Leaf {
        self.leaf((2020, 1, 1), (2099, 1, 1))
    }

    pub fn expired(&self) -> Leaf {
        self.leaf((2020, 1, 1), (2021, 1, 1))
    }
}
