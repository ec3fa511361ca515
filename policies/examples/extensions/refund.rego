# METADATA
# title: Refund limit
# description: >-
#   An organisation rule beside the generated workspace policy: refunds through
#   the payments:refund tool or capability are limited to 400 (in the smallest
#   unit the tool takes), whatever the workspace's allow lists say.
package ext.refund

_refund_actions := {"tool", "capability"}

deny contains {"rule": "ext.refund_limit", "message": sprintf("refund of %v is over the limit of 400", [input.action.args.amount])} if {
	input.action.type in _refund_actions
	input.action.name == "payments:refund"
	_amount_is_number # Rego orders every string above every number: compare numbers only
	input.action.args.amount > 400
}

# A named rule, so that a missing amount negates cleanly in OPA and regorus alike.
_amount_is_number if is_number(input.action.args.amount)

deny contains {"rule": "ext.refund_amount", "message": "a refund needs a numeric args.amount"} if {
	input.action.type in _refund_actions
	input.action.name == "payments:refund"
	not _amount_is_number
}
