"""Alert delivery: Slack, a signed generic webhook and PagerDuty, routed by severity."""
