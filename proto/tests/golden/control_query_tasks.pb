
,{"type":"tasks","service":"web","node":null}