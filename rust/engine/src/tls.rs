//! TLS material: the PEM CA bundle of `sealcommit.tls.ca-file`, read and validated once here
//! for both the settings check (`settings`) and the client (`store`).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::{Error, Result};

/// Reads and validates a PEM CA bundle (a malformed PEM would otherwise make the SDK panic on
/// the first request).
pub fn load_ca_file(path: &str, setting: &str) -> Result<Vec<u8>> {
    let pem = std::fs::read(path)
        .map_err(|e| Error::config(setting, format!("cannot read the CA file '{path}': {e}")))?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| {
            Error::config(
                setting,
                format!("'{path}' is not a valid PEM certificate bundle: {e:?}"),
            )
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(Error::config(
            setting,
            format!("'{path}' contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)"),
        ));
    }
    Ok(pem)
}
