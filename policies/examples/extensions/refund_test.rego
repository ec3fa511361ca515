package ext.refund_test

refund(amount) := {"action": {"type": "tool", "name": "payments:refund", "args": {"amount": amount}}}

test_400_is_allowed if {
	count(data.ext.refund.deny) == 0 with input as refund(400)
}

test_401_is_denied if {
	{v.rule | some v in data.ext.refund.deny} == {"ext.refund_limit"} with input as refund(401)
}

test_a_missing_amount_is_denied if {
	{v.rule | some v in data.ext.refund.deny} == {"ext.refund_amount"} with input as {"action": {"type": "capability", "name": "payments:refund", "args": {}}}
}

test_other_tools_are_not_judged if {
	count(data.ext.refund.deny) == 0 with input as {"action": {"type": "tool", "name": "web_search", "args": {"amount": 10000}}}
}

test_a_string_amount_is_not_compared_but_denied if {
	{v.rule | some v in data.ext.refund.deny} == {"ext.refund_amount"} with input as refund("400")
}
