//! The names in a client certificate: its subject's Common Name and its Subject Alternative
//! Names. rustls has already verified the certificate; this only reads it, walking the DER
//! just far enough, so firmware carries no general X.509 parser.

/// A client certificate's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CertificateNames {
    /// The last Common Name (OID 2.5.4.3) of the subject, the most specific one.
    pub(crate) common_name: Option<String>,
    /// Subject Alternative Names of the kinds that name a client: DNS names, e-mail
    /// addresses and URIs, in certificate order.
    pub(crate) alternative_names: Vec<String>,
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BOOLEAN: u8 = 0x01;
/// `[0]` (version) and `[3]` (extensions) in TBSCertificate, constructed.
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
/// GeneralName choices: rfc822Name `[1]`, dNSName `[2]`, uniformResourceIdentifier `[6]`.
const SAN_EMAIL: u8 = 0x81;
const SAN_DNS: u8 = 0x82;
const SAN_URI: u8 = 0x86;
/// 2.5.4.3 (id-at-commonName) and 2.5.29.17 (id-ce-subjectAltName).
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// Reads the names of a DER certificate; `None` when it is not one.
pub(crate) fn certificate_names(der: &[u8]) -> Option<CertificateNames> {
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    if tbs.first() == Some(&VERSION) {
        tbs = read(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity: skipped.
    for _ in 0..4 {
        tbs = read(tbs)?.2;
    }
    let (subject, rest) = expect(tbs, SEQUENCE)?;
    let mut names = CertificateNames {
        common_name: common_name(subject)?,
        alternative_names: Vec::new(),
    };
    // subjectPublicKeyInfo, then optional issuerUniqueID [1], subjectUniqueID [2], extensions [3].
    let mut rest = read(rest)?.2;
    while let Some((tag, body, next)) = read(rest) {
        if tag == EXTENSIONS {
            names.alternative_names = alternative_names(expect(body, SEQUENCE)?.0)?;
        }
        rest = next;
    }
    Some(names)
}

/// The last commonName in a Name (SEQUENCE OF SET OF AttributeTypeAndValue).
fn common_name(mut name: &[u8]) -> Option<Option<String>> {
    let mut found = None;
    while !name.is_empty() {
        let (mut set, rest) = expect(name, SET)?;
        while !set.is_empty() {
            let (attribute, next) = expect(set, SEQUENCE)?;
            let (oid, value) = expect(attribute, OID)?;
            if oid == OID_COMMON_NAME {
                // UTF8String, PrintableString, IA5String, T61String...: all read as UTF-8 text.
                let (_, text, _) = read(value)?;
                found = Some(String::from_utf8_lossy(text).into_owned());
            }
            set = next;
        }
        name = rest;
    }
    Some(found)
}

/// DNS, e-mail and URI entries of the subjectAltName extension, if there is one.
fn alternative_names(mut extensions: &[u8]) -> Option<Vec<String>> {
    while !extensions.is_empty() {
        let (extension, rest) = expect(extensions, SEQUENCE)?;
        let (oid, mut body) = expect(extension, OID)?;
        if oid == OID_SUBJECT_ALT_NAME {
            if body.first() == Some(&BOOLEAN) {
                body = read(body)?.2;
            }
            let (value, _) = expect(body, OCTET_STRING)?;
            let (mut general_names, _) = expect(value, SEQUENCE)?;
            let mut names = Vec::new();
            while let Some((tag, text, next)) = read(general_names) {
                if matches!(tag, SAN_DNS | SAN_EMAIL | SAN_URI) {
                    names.push(String::from_utf8_lossy(text).into_owned());
                }
                general_names = next;
            }
            return Some(names);
        }
        extensions = rest;
    }
    Some(Vec::new())
}

/// The body of a `tag` element at the start of `der`, and what follows it.
fn expect(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, body, rest) = read(der)?;
    (found == tag).then_some((body, rest))
}

/// One DER element at the start of `der`: its tag, its body and what follows. Only the
/// definite lengths DER allows, up to four length bytes.
fn read(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, der) = der.split_first()?;
    let (&first, der) = der.split_first()?;
    let (len, der) = if first < 0x80 {
        (usize::from(first), der)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || der.len() < count {
            return None;
        }
        let len = der[..count]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &der[count..])
    };
    (der.len() >= len).then(|| (tag, &der[..len], &der[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn certificate(cn: Option<&str>, sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "nanomq tests");
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn common_name_and_alternative_names() {
        let der = certificate(
            Some("gateway-7"),
            vec![
                SanType::DnsName("gw7.example".try_into().unwrap()),
                SanType::IpAddress("192.0.2.7".parse().unwrap()),
                SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
                SanType::URI("urn:device:7".try_into().unwrap()),
            ],
        );
        let names = certificate_names(&der).unwrap();
        assert_eq!(names.common_name.as_deref(), Some("gateway-7"));
        assert_eq!(
            names.alternative_names,
            ["gw7.example", "ops@example.com", "urn:device:7"]
        );
    }

    #[test]
    fn certificates_without_names() {
        let names = certificate_names(&certificate(None, vec![])).unwrap();
        assert_eq!(names, CertificateNames::default());
        let utf8 = certificate_names(&certificate(Some("capteur-é"), vec![])).unwrap();
        assert_eq!(utf8.common_name.as_deref(), Some("capteur-é"));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let der = certificate(Some("x"), vec![]);
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            assert_eq!(certificate_names(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(certificate_names(b"\x30\x85\xff\xff\xff\xff\xff"), None);
        assert_eq!(certificate_names(b"hello"), None);
    }
}
