version=2
# Apache combined access log (liblognorm v2 rulebase), for rsyslog-apache.conf.
rule=:%clientip:word% %ident:word% %auth:word% [%timestamp:char-to{"extradata":"]"}%] "%verb:word% %request:word% HTTP/%httpversion:char-to{"extradata":"\""}%" %status:number% %bytes:word% "%referrer:char-to{"extradata":"\""}%" "%agent:char-to{"extradata":"\""}%"
