//! Authorization: MCollective actionpolicy files.
