//! The S3 XML answers the service reads, as small structs of our own (the S3 API reference
//! names each element). Unknown elements are ignored, so stores that add fields still parse.

use serde::Deserialize;

/// `<Error>`: the body of a failed S3 call, and sometimes of a 200 `CompleteMultipartUpload`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct S3ErrorBody {
    #[serde(rename = "Code", default)]
    pub(crate) code: String,
    #[serde(rename = "Message", default)]
    pub(crate) message: String,
}

/// `<InitiateMultipartUploadResult>`.
#[derive(Debug, Deserialize)]
pub(crate) struct InitiateMultipartUploadResult {
    #[serde(rename = "UploadId")]
    pub(crate) upload_id: String,
}

/// `<ListPartsResult>`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListPartsResult {
    #[serde(rename = "IsTruncated", default)]
    pub(crate) is_truncated: bool,
    #[serde(rename = "NextPartNumberMarker", default)]
    pub(crate) next_part_number_marker: Option<u32>,
    #[serde(rename = "Part", default)]
    pub(crate) parts: Vec<ListedPartXml>,
}

/// `<Part>` of a `ListPartsResult`. s3s-fs leaves out `ETag`; SeaweedFS leaves out the checksum.
#[derive(Debug, Deserialize)]
pub(crate) struct ListedPartXml {
    #[serde(rename = "PartNumber")]
    pub(crate) part_number: u32,
    #[serde(rename = "Size")]
    pub(crate) size: u64,
    #[serde(rename = "ETag", default)]
    pub(crate) etag: Option<String>,
    #[serde(rename = "ChecksumSHA256", default)]
    pub(crate) checksum_sha256: Option<String>,
}

/// `<CompleteMultipartUploadResult>`.
#[derive(Debug, Deserialize)]
pub(crate) struct CompleteMultipartUploadResult {
    #[serde(rename = "ETag", default)]
    pub(crate) etag: Option<String>,
    #[serde(rename = "ChecksumSHA256", default)]
    pub(crate) checksum_sha256: Option<String>,
}

/// The root element name of an XML document (after any declaration and whitespace).
pub(crate) fn root_name(xml: &str) -> Option<&str> {
    let mut rest = xml.trim_start();
    loop {
        rest = rest.strip_prefix('<')?;
        if rest.starts_with('?') || rest.starts_with('!') {
            rest = rest.split_once('>')?.1.trim_start();
            continue;
        }
        let end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
        return Some(&rest[..end]);
    }
}

/// Parses `xml` as `T`; the error message is quick-xml's, without the document.
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(xml: &str) -> Result<T, String> {
    quick_xml::de::from_str(xml).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parts_without_etags_parses() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Bucket>valet</Bucket><Key>k</Key><UploadId>u</UploadId>
              <Part><PartNumber>2</PartNumber><Size>1</Size><LastModified>2024-01-01T00:00:00Z</LastModified></Part>
              <Part><PartNumber>1</PartNumber><ETag>"abc"</ETag><Size>5242880</Size></Part>
            </ListPartsResult>"#;
        let parsed: ListPartsResult = parse(xml).unwrap();
        assert!(!parsed.is_truncated);
        assert_eq!(parsed.parts.len(), 2);
        assert_eq!(parsed.parts[0].etag, None);
        assert_eq!(parsed.parts[1].etag.as_deref(), Some("\"abc\""));
        assert_eq!(parsed.parts[1].size, 5_242_880);
    }

    #[test]
    fn truncated_listing_carries_the_next_marker() {
        let xml = "<ListPartsResult><IsTruncated>true</IsTruncated>\
                   <NextPartNumberMarker>1000</NextPartNumberMarker></ListPartsResult>";
        let parsed: ListPartsResult = parse(xml).unwrap();
        assert!(parsed.is_truncated);
        assert_eq!(parsed.next_part_number_marker, Some(1000));
        assert!(parsed.parts.is_empty());
    }

    #[test]
    fn an_error_in_a_200_body_is_recognized() {
        let xml = "\n  \n<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code>\
                   <Message>We encountered an internal error.</Message></Error>";
        assert_eq!(root_name(xml), Some("Error"));
        let e: S3ErrorBody = parse(xml).unwrap();
        assert_eq!(e.code, "InternalError");
        let ok = "<CompleteMultipartUploadResult xmlns=\"x\"><ETag>\"e-2\"</ETag>\
                  <ChecksumSHA256>Bezw+ET2NPYZ+ZPbfM+mKjo/y1knEJ7o2BFxxKwe+GE=-2</ChecksumSHA256>\
                  </CompleteMultipartUploadResult>";
        assert_eq!(root_name(ok), Some("CompleteMultipartUploadResult"));
        let done: CompleteMultipartUploadResult = parse(ok).unwrap();
        assert_eq!(done.etag.as_deref(), Some("\"e-2\""));
        assert!(done.checksum_sha256.unwrap().ends_with("-2"));
    }
}
