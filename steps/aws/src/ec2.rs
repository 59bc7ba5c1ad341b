//! EC2 DescribeRegions adapter.

use iamtrail_core::targets::RegionInfo;

use crate::ports::{RegionLister, StoreError};

/// Lists regions with EC2 DescribeRegions (without `AllRegions`, so AWS answers with the
/// enabled ones; the opt-in status is checked again by the caller).
pub struct Ec2Regions {
    client: aws_sdk_ec2::Client,
}

impl Ec2Regions {
    pub fn new(client: aws_sdk_ec2::Client) -> Self {
        Ec2Regions { client }
    }
}

impl RegionLister for Ec2Regions {
    async fn regions(&self) -> Result<Vec<RegionInfo>, StoreError> {
        let response = self
            .client
            .describe_regions()
            .send()
            .await
            .map_err(|e| StoreError {
                operation: "ec2:DescribeRegions",
                message: aws_sdk_ec2::error::DisplayErrorContext(e).to_string(),
            })?;
        Ok(response
            .regions()
            .iter()
            .filter_map(|r| {
                Some(RegionInfo {
                    name: r.region_name()?.to_string(),
                    opt_in_status: r.opt_in_status().map(String::from),
                })
            })
            .collect())
    }
}
