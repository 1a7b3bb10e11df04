//! The collective's PKI: CA, certificates, CSRs and the CRL.
