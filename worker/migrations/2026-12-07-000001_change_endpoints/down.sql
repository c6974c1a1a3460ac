DROP TABLE change_endpoint_positions;
DROP TABLE change_endpoints;
